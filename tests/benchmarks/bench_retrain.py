"""A retrain on 1,000,000 labelled rows against a plain scikit-learn fit on the same arrays (goals: time at most
1.5x the plain fit, peak memory at most 2x the feature matrix).

Run with `make bench`. Uses a throwaway SQLite database under a temporary FEEDBACKHUB_VAR_DIR (or DATABASE_URL when
set). The rows are predictions with outcomes, stored with executemany (much faster than the API, same tables); each
input is a list of 15 float64 features as a client's json.dumps writes them, the target 0/1 from a noisy linear rule.

Both measured steps run in a fresh subprocess, so the peak is that step's own: the retrain is the real
`training_run_execute` (read in chunks, featurize, fit, score on the holdout, hash, save, record); the plain fit is
the project's default estimator, LogisticRegression(max_iter=1000, random_state=0), on the same training rows already
in memory as NumPy arrays (labels as 0/1 integers, as a plain script would have them). Memory is the resident set:
the peak (VmHWM, reset through /proc/self/clear_refs once everything is imported) minus the resident set at that
moment. Not tracemalloc: it misses SQLite's and BLAS's allocations and slows Python down several times.
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
OWN_VAR_DIR = "FEEDBACKHUB_VAR_DIR" not in os.environ  # then removed at the end: the database is about 800 MB
os.environ.setdefault("FEEDBACKHUB_VAR_DIR", tempfile.mkdtemp(prefix="feedbackhub-bench-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedbackhub.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import sklearn.linear_model  # noqa: E402, F401 - imported before the baseline: the run imports it too
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from collector.models import ModelVersion, Prediction, RegisteredModel  # noqa: E402
from loop import services  # noqa: E402
from loop.models import RetrainPolicy  # noqa: E402
from loop.trainers import DEFAULT_CLASSIFIER, SklearnTrainer  # noqa: E402

ROWS = 1_000_000
FEATURES = 15
HOLDOUT_SHARE = 0.2
REPEATS = 3  # each in a fresh process; the first retrain has no champion, the later ones also score the champion
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
    timed(services, "dataset_read", phases)
    timed(SklearnTrainer, "fit", phases)

    def run() -> dict:
        run, _ = services.retrain_request(registered_model=model, trigger="bench", dispatch=False)
        finished = services.training_run_execute(run_id=run.pk)
        assert finished is not None and finished.status == "succeeded", finished and finished.error
        return {"train": finished.train_count, "holdout": finished.holdout_count, "decision": finished.decision}

    return {**measure(run), **phases}


def plain_fit_step(directory: Path) -> dict:
    features, labels = np.load(directory / "features.npy"), np.load(directory / "labels.npy")
    estimator_path, params = DEFAULT_CLASSIFIER
    estimator = getattr(sklearn.linear_model, estimator_path.rsplit(".", 1)[1])(**params, random_state=0)

    def fit() -> dict:
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


def main() -> None:
    call_command("migrate", verbosity=0)
    model = RegisteredModel.objects.create(name=MODEL, task_type="binary")
    RetrainPolicy.objects.create(registered_model=model, holdout_share=HOLDOUT_SHARE)
    version = ModelVersion.objects.create(registered_model=model, version="v1")
    features, labels = dataset()
    seed(version, features, labels)
    train_rows = ROWS - int(ROWS * HOLDOUT_SHARE)
    directory = Path(os.environ["FEEDBACKHUB_VAR_DIR"])
    np.save(directory / "features.npy", features[:train_rows])
    np.save(directory / "labels.npy", labels[:train_rows])
    matrix_mb = features.nbytes / 2**20
    del features, labels
    connection.close()

    retrains, plains = [], []
    for repeat in range(1, REPEATS + 1):  # alternating, so a busy moment of the machine hits both alike
        print(f"  retrain {repeat}/{REPEATS} in a fresh process ...", file=sys.stderr, flush=True)
        retrains.append(child("--retrain"))
        print(f"  plain scikit-learn fit {repeat}/{REPEATS} in a fresh process ...", file=sys.stderr, flush=True)
        plains.append(child("--plain-fit", str(directory)))
    assert {step["train"] for step in retrains + plains} == {train_rows}, (retrains, plains)
    retrain, plain = median_step(retrains), median_step(plains)

    time_ratio = retrain["seconds"] / plain["seconds"]
    memory_ratio = retrain["peak_mb"] / matrix_mb
    print(
        f"\nRetrain on {ROWS:,} labelled rows ({connection.vendor}, {FEATURES} features, LogisticRegression; "
        f"median time of {REPEATS} runs, highest peak)\n"
    )
    print("| rows | feature matrix MB | retrain s | plain fit s | time ratio (≤ 1.5) | peak MB above baseline "
          "| memory ratio (≤ 2.0) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {ROWS:,} | {matrix_mb:.0f} | {retrain['seconds']:.2f} | {plain['seconds']:.2f} | {time_ratio:.2f} "
        f"| {retrain['peak_mb']:.0f} | {memory_ratio:.2f} |"
    )
    rest = retrain["seconds"] - retrain["dataset_read"] - retrain["fit"]
    print(
        f"\nRetrain: reading {retrain['dataset_read']:.2f} s, fit {retrain['fit']:.2f} s, the rest (score, hash, save, "
        f"record) {rest:.2f} s; trained on {retrain['train']:,}, held out {retrain['holdout']:,}: {retrain['decision']}"
    )
    print(f"Plain fit: peak {plain['peak_mb']:.0f} MB above its baseline (the arrays were loaded before it).")
    print(f"Goals: time {'met' if time_ratio <= 1.5 else 'NOT met'} ({time_ratio:.2f}), memory "
          f"{'met' if memory_ratio <= 2.0 else 'NOT met'} ({memory_ratio:.2f}). Command: `{COMMAND}`")  # fmt: skip


if __name__ == "__main__":
    if sys.argv[1:2] == ["--retrain"]:
        print(json.dumps(retrain_step()))
    elif sys.argv[1:2] == ["--plain-fit"]:
        print(json.dumps(plain_fit_step(Path(sys.argv[2]))))
    else:
        try:
            main()
        finally:
            if OWN_VAR_DIR:
                shutil.rmtree(os.environ["FEEDBACKHUB_VAR_DIR"], ignore_errors=True)
