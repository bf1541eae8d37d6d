"""A retrain on 1,000,000 labelled rows against a plain scikit-learn fit on the same arrays (goals: time at most
1.5x the plain fit, peak memory at most 2x the feature matrix).

Two retrain times are measured, because a run keeps a snapshot of the decoded rows for the next one (loop.snapshots):
- cold: the first retrain of a model, or the one after a retention purge: no snapshot, every row is read and decoded
  from the database, and the snapshot is written;
- warm: the steady state of a deployed loop, which retrains again and again on a growing table: the snapshot of the
  previous run plus the rows labelled since. Here the previous run's snapshot was made while the outcomes of 10,000
  of the newest 50,000 predictions were still missing; they arrive (stamped now) before the measured run, so it
  reads 10,000 rows from the database and places them between stored rows, and trains on the same 1,000,000 rows.
The time goal applies to the warm retrain, what the loop pays run after run; the cold one is reported beside it, and
the memory goal to the higher peak of the two.

Run with `make bench`. Uses a throwaway SQLite database under a temporary FEEDBACKHUB_VAR_DIR (or DATABASE_URL when
set). The rows are predictions with outcomes, stored with executemany (much faster than the API, same tables); each
input is a list of 15 float64 features as a client's json.dumps writes them, the target 0/1 from a noisy linear rule.
On PostgreSQL the table is then vacuumed and analysed, as autovacuum does after a bulk load in a deployment (without
statistics the planner scans all the model's rows for the few rows labelled since the snapshot).

Both measured steps run in a fresh subprocess, so the peak is that step's own: the retrain is the real
`training_run_execute` (read in chunks, featurize, fit, score on the holdout, hash, save, record); the plain fit is
the project's default estimator, LogisticRegression(max_iter=1000, random_state=0), on the same training rows already
in memory as NumPy arrays (labels as 0/1 integers, as a plain script would have them), with the BLAS libraries'
default threads; the run fits with one (FEEDBACKHUB_TRAINING_BLAS_THREADS), so the same fit with one BLAS thread is
reported beside it, without a goal. Memory is the resident set:
the peak (VmHWM, reset through /proc/self/clear_refs once everything is imported) minus the resident set at that
moment; it includes the pages of the snapshot file a warm run maps as its feature matrix. Not tracemalloc: it
misses SQLite's and BLAS's allocations, and memory maps, and slows Python down several times.
"""

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
OWN_VAR_DIR = "FEEDBACKHUB_VAR_DIR" not in os.environ  # then removed at the end: the database is about 800 MB
if OWN_VAR_DIR:  # the measured steps' processes inherit the parent's (a setdefault would still make a directory)
    os.environ["FEEDBACKHUB_VAR_DIR"] = tempfile.mkdtemp(prefix="feedbackhub-bench-")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedbackhub.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import sklearn.linear_model  # noqa: E402, F401 - imported before the baseline: the run imports it too
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from figures import Figure, report  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from collector.models import ModelVersion, Prediction, RegisteredModel  # noqa: E402
from loop import datasets, services  # noqa: E402
from loop.datasets import dataset_read  # noqa: E402
from loop.models import RetrainPolicy  # noqa: E402
from loop.trainers import DEFAULT_CLASSIFIER, SklearnTrainer  # noqa: E402

ROWS = 1_000_000
FEATURES = 15
HOLDOUT_SHARE = 0.2
REPEATS = 3  # each in a fresh process; the first retrain has no champion, the later ones also score the champion
LATE_OUTCOMES = 10_000  # of the newest LATE_WINDOW predictions, labelled after the warm run's snapshot was made
LATE_WINDOW = 50_000
CHUNK = 20_000
MODEL = "bench-retrain"
COLUMNS = [
    "registered_model_id", "model_version_id", "event_id", "created_at", "received_at", "source", "input",
    "prediction", "predicted_label", "actual", "actual_label", "actual_recorded_at", "is_correct", "latency_ms",
    "confidence", "interaction_id", "attributes", "payload_sha256",
]  # fmt: skip
COMMAND = ".venv/bin/python tests/benchmarks/bench_retrain.py"


def dataset() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    features = rng.standard_normal((ROWS, FEATURES))
    weights = rng.uniform(-2, 2, FEATURES)
    labels = (features @ weights + rng.logistic(size=ROWS) > 0).astype(np.int64)
    return features, labels


def seed(version: ModelVersion, features: np.ndarray, labels: np.ndarray) -> None:
    table = Prediction._meta.db_table
    sql = f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"  # noqa: S608
    adapt = connection.ops.adapt_datetimefield_value
    start = datetime.now(UTC) - timedelta(days=30)
    for first in range(0, ROWS, CHUNK):
        rows = []
        for n in range(first, min(first + CHUNK, ROWS)):
            moment = adapt(start + timedelta(milliseconds=n))  # time order is row order
            actual = int(labels[n])
            rows.append((
                version.registered_model_id, version.pk, f"bench-{n}", moment, moment, "api",
                json.dumps(features[n].tolist()), "1", "1", json.dumps(actual), str(actual), moment, actual == 1,
                5.0, 0.7, "", "{}", "0" * 64,
            ))  # fmt: skip
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)
        print(
            f"  stored {min(first + CHUNK, ROWS):,} / {ROWS:,} predictions with outcomes", file=sys.stderr, flush=True
        )


def resident_mb(field: str) -> float:
    status = Path("/proc/self/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1]) / 1024


def baseline_mb() -> float:
    """The resident set now, with the peak reset to it (so the peak read later is this step's)."""
    # Without the reset the peak may be an earlier one: the figure can then only come out too high.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return resident_mb("VmRSS")


def measure(step: object) -> dict:
    connection.ensure_connection()
    baseline = baseline_mb()
    started = time.perf_counter()
    facts = step()
    return {"seconds": time.perf_counter() - started, "peak_mb": resident_mb("VmHWM") - baseline, **facts}


def timed(owner: object, name: str, into: dict) -> None:
    """Wrap owner.name to add its wall time to into[name] (for the breakdown line)."""
    original = getattr(owner, name)

    def wrapper(*args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            into[name] = into.get(name, 0.0) + time.perf_counter() - started

    setattr(owner, name, wrapper)


def retrain_step() -> dict:
    model = RegisteredModel.objects.get(name=MODEL)
    phases: dict[str, float] = {}
    timed(datasets, "_read_through_snapshot", phases)  # the reads; the snapshot is stored during the fit
    timed(SklearnTrainer, "fit", phases)

    def run() -> dict:
        run, _ = services.retrain_request(registered_model=model, trigger="bench", dispatch=False)
        finished = services.training_run_execute(run_id=run.pk)
        assert finished is not None and finished.status == "succeeded", finished and finished.error
        return {
            "train": finished.train_count,
            "holdout": finished.holdout_count,
            "decision": finished.decision,
            "dataset": finished.dataset_sha256,
        }

    return {**measure(run), "reading": phases["_read_through_snapshot"], "fit": phases["fit"]}


def plain_fit_step(directory: Path, *, blas_threads: int | None = None) -> dict:
    features, labels = np.load(directory / "features.npy"), np.load(directory / "labels.npy")
    estimator_path, params = DEFAULT_CLASSIFIER
    estimator = getattr(sklearn.linear_model, estimator_path.rsplit(".", 1)[1])(**params, random_state=0)

    def fit() -> dict:
        with threadpool_limits(limits=blas_threads, user_api="blas"):
            estimator.fit(features, labels)
        return {"train": len(features)}

    return measure(fit)


def median_step(steps: list[dict]) -> dict:
    """The median run by time, with the highest peak of all runs."""
    middle = sorted(steps, key=lambda step: step["seconds"])[len(steps) // 2]
    return {**middle, "peak_mb": max(step["peak_mb"] for step in steps)}


def child(*arguments: str) -> dict:
    output = subprocess.run(
        [sys.executable, __file__, *arguments], check=True, capture_output=True, text=True, cwd=ROOT
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def late_rows() -> list[int]:
    """The predictions whose outcomes arrive after the warm run's snapshot: every fifth of the newest LATE_WINDOW."""
    newest = Prediction.objects.filter(registered_model__name=MODEL).order_by("-created_at", "-pk")
    return list(newest.values_list("pk", flat=True)[:LATE_WINDOW])[:: LATE_WINDOW // LATE_OUTCOMES]


def prepare_warm(late: list[int], labels: np.ndarray) -> None:
    """The state a deployed loop is in before a retrain: a snapshot from the previous run, made while the late rows
    had no outcome, and then their outcomes recorded (stamped now, as the outcome service does)."""
    table = Prediction._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET actual = NULL, actual_label = '', is_correct = NULL, actual_recorded_at = NULL "  # noqa: S608
            "WHERE id = %s",
            [(pk,) for pk in late],
        )
    dataset_read(registered_model=RegisteredModel.objects.get(name=MODEL))  # what the previous run left
    now = connection.ops.adapt_datetimefield_value(datetime.now(UTC))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(
            f"UPDATE {table} SET actual = %s, actual_label = %s, is_correct = %s, actual_recorded_at = %s "  # noqa: S608
            "WHERE id = %s",
            [(json.dumps(int(y)), str(int(y)), int(y) == 1, now, pk) for pk, y in zip(late, labels, strict=True)],
        )


def snapshots_remove() -> None:
    shutil.rmtree(Path(os.environ["FEEDBACKHUB_VAR_DIR"]) / "datasets", ignore_errors=True)


def ratio_figure(measure: str, step: dict, plain: dict, *, goal: bool) -> tuple[Figure, float]:
    ratio = step["seconds"] / plain["seconds"]
    figure = Figure(
        measure=measure,
        value=f"{step['seconds']:.2f} s",
        baseline="plain scikit-learn fit on the same arrays",
        baseline_value=f"{plain['seconds']:.2f} s",
        ratio=f"{ratio:.2f}×",
        goal="≤ 1.5×" if goal else "",
        met=ratio <= 1.5 if goal else None,
    )
    return figure, ratio


def main() -> int:
    call_command("migrate", verbosity=0)
    model = RegisteredModel.objects.create(name=MODEL, task_type="binary")
    RetrainPolicy.objects.create(registered_model=model, holdout_share=HOLDOUT_SHARE)
    version = ModelVersion.objects.create(registered_model=model, version="v1")
    features, labels = dataset()
    seed(version, features, labels)
    if connection.vendor == "postgresql":  # what autovacuum does after a bulk load: statistics, visibility map
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {Prediction._meta.db_table}")
    train_rows = ROWS - int(ROWS * HOLDOUT_SHARE)
    directory = Path(os.environ["FEEDBACKHUB_VAR_DIR"])
    np.save(directory / "features.npy", features[:train_rows])
    np.save(directory / "labels.npy", labels[:train_rows])
    matrix_mb = features.nbytes / 2**20
    late = late_rows()
    event_ids = dict(Prediction.objects.filter(pk__in=late).values_list("pk", "event_id"))
    late_labels = labels[[int(event_ids[pk].removeprefix("bench-")) for pk in late]]
    del features
    connection.close()

    colds, warms, plains, one_thread_plains = [], [], [], []
    for repeat in range(1, REPEATS + 1):  # alternating, so a busy moment of the machine hits all alike
        print(f"  cold retrain {repeat}/{REPEATS} (no snapshot) in a fresh process ...", file=sys.stderr, flush=True)
        snapshots_remove()
        colds.append(child("--retrain"))
        print(f"  warm retrain {repeat}/{REPEATS} (snapshot + {LATE_OUTCOMES:,} late outcomes) ...", file=sys.stderr,
              flush=True)  # fmt: skip
        prepare_warm(late, late_labels)
        connection.close()
        warms.append(child("--retrain"))
        print(f"  plain scikit-learn fit {repeat}/{REPEATS} in a fresh process ...", file=sys.stderr, flush=True)
        plains.append(child("--plain-fit", str(directory)))
        one_thread_plains.append(child("--plain-fit-one-blas-thread", str(directory)))
    assert {step["train"] for step in colds + warms + plains + one_thread_plains} == {train_rows}, (colds, warms)
    assert {step["dataset"] for step in colds + warms} == {colds[0]["dataset"]}, "warm and cold read other rows"
    cold, warm, plain = median_step(colds), median_step(warms), median_step(plains)
    one_thread_plain = median_step(one_thread_plains)

    cold_figure, cold_ratio = ratio_figure(
        f"retrain on {ROWS:,} labelled rows, cold (first run, no snapshot): time", cold, plain, goal=False
    )
    warm_figure, warm_ratio = ratio_figure(
        f"retrain on {ROWS:,} labelled rows, warm (snapshot + {LATE_OUTCOMES:,} rows labelled since): time",
        warm,
        plain,
        goal=True,
    )
    # The run fits with one BLAS thread (FEEDBACKHUB_TRAINING_BLAS_THREADS); the same fit so, for comparison.
    one_thread_figure = Figure(
        measure=f"retrain on {ROWS:,} labelled rows, warm: time against a plain fit with one BLAS thread",
        value=f"{warm['seconds']:.2f} s",
        baseline="plain scikit-learn fit on the same arrays, one BLAS thread (as the run fits)",
        baseline_value=f"{one_thread_plain['seconds']:.2f} s",
        ratio=f"{warm['seconds'] / one_thread_plain['seconds']:.2f}×",
        goal="",
        met=None,
    )
    peak_mb = max(cold["peak_mb"], warm["peak_mb"])
    memory_ratio = peak_mb / matrix_mb
    memory_figure = Figure(
        measure=f"retrain on {ROWS:,} labelled rows: peak memory above the process's baseline (cold or warm)",
        value=f"{peak_mb:.0f} MB",
        baseline=f"the feature matrix ({ROWS:,} × {FEATURES} float64)",
        baseline_value=f"{matrix_mb:.0f} MB",
        ratio=f"{memory_ratio:.2f}×",
        goal="≤ 2.0×",
        met=memory_ratio <= 2.0,
    )
    for figure in (cold_figure, warm_figure, one_thread_figure, memory_figure):
        report(figure)

    print(
        f"\nRetrain on {ROWS:,} labelled rows ({connection.vendor}, {FEATURES} features, LogisticRegression; "
        f"median time of {REPEATS} runs, highest peak)\n"
    )
    print("| retrain | rows | feature matrix MB | retrain s | plain fit s | time ratio | peak MB above baseline "
          "| memory ratio (≤ 2.0) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, step, ratio in (("cold", cold, cold_ratio), ("warm (goal ≤ 1.5)", warm, warm_ratio)):
        print(
            f"| {name} | {ROWS:,} | {matrix_mb:.0f} | {step['seconds']:.2f} | {plain['seconds']:.2f} | {ratio:.2f} "
            f"| {step['peak_mb']:.0f} | {step['peak_mb'] / matrix_mb:.2f} |"
        )
    print()
    for name, step in (("Cold", cold), ("Warm", warm)):
        rest = step["seconds"] - step["reading"] - step["fit"]
        print(
            f"{name} retrain: reading {step['reading']:.2f} s, fit {step['fit']:.2f} s, the rest (score, hash, "
            f"save, record) {rest:.2f} s; trained on {step['train']:,}, held out {step['holdout']:,}: "
            f"{step['decision']}"
        )
    print(f"Plain fit: peak {plain['peak_mb']:.0f} MB above its baseline (the arrays were loaded before it); with one "
          f"BLAS thread, as the run fits: {one_thread_plain['seconds']:.2f} s (warm ratio "
          f"{warm['seconds'] / one_thread_plain['seconds']:.2f}).")  # fmt: skip
    time_met, memory_met = warm_ratio <= 1.5, memory_ratio <= 2.0
    print(f"Goals: time (warm) {'met' if time_met else 'NOT met'} ({warm_ratio:.2f}; cold {cold_ratio:.2f}), memory "
          f"{'met' if memory_met else 'NOT met'} ({memory_ratio:.2f}). Command: `{COMMAND}`")  # fmt: skip
    return 0 if time_met and memory_met else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--retrain"]:
        print(json.dumps(retrain_step()))
    elif sys.argv[1:2] == ["--plain-fit"]:
        print(json.dumps(plain_fit_step(Path(sys.argv[2]))))
    elif sys.argv[1:2] == ["--plain-fit-one-blas-thread"]:
        print(json.dumps(plain_fit_step(Path(sys.argv[2]), blas_threads=1)))
    else:
        try:
            status = main()
        finally:
            if OWN_VAR_DIR:
                shutil.rmtree(os.environ["FEEDBACKHUB_VAR_DIR"], ignore_errors=True)
        sys.exit(status)
