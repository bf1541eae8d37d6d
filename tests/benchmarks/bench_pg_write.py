"""One prediction written on PostgreSQL in process, as the project's settings connect, beside Django's defaults.

Run with `python tests/benchmarks/bench_pg_write.py`. A throwaway database `bench_pg_write_<pid>` on 127.0.0.1:5432
(or PGHOST/PGPORT/PGUSER) is migrated, then two kinds of process write WRITES single predictions one after another
through `services.prediction_record` (the path every single-event request takes, without HTTP):

- the project's settings: values bound on the server, statements prepared after 5 uses, and a new event of a known
  model written as one pipeline in one round trip (`services._new_predictions_pipelined`);
- Django's defaults for PostgreSQL (`?server_side_binding=false`): values bound in the client, nothing prepared,
  and the write in a transaction of its own, seven round trips (BEGIN, model, locks, look-ups, insert, counters,
  COMMIT).

The tables are analyzed after a warm-up, as autovacuum would have analyzed them on a live database. Each kind runs
twice, alternating, and its faster run counts: milliseconds a write (wall), the process's CPU and
the server's (the backend's CPU from /proc, PostgreSQL on the same machine). Skipped with a note when PostgreSQL
cannot be reached.
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from figures import Figure, report  # noqa: E402
from throwaway_postgres import throwaway_database  # noqa: E402

WRITES = 2000
WARM_UP = 50
DJANGO_DEFAULTS = "?server_side_binding=false"


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def write_phase() -> None:
    """In a child process whose DATABASE_URL says how to connect: time the writes, print one JSON line."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedbackhub.settings")
    django.setup()
    from django.db import connection

    from collector.services import Actor, PredictionIn, prediction_record

    actor = Actor(label="bench")
    run = f"{os.getpid()}-{time.time_ns()}"

    def write(n: int) -> None:
        item = PredictionIn(
            model="bench", version="v1", input={"text": f"message {n}", "length": n % 40},
            prediction=n % 2, confidence=0.5 + (n % 50) / 100, latency_ms=float(n % 30), event_id=f"{run}-{n}",
        )  # fmt: skip
        prediction_record(item=item, actor=actor)

    for n in range(WARM_UP):
        write(n)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # as autovacuum would have on a live database: PostgreSQL plans from statistics
    for n in range(WARM_UP):
        write(WARM_UP + WRITES + n)
    backend = connection.connection.info.backend_pid
    server_before, cpu_before, started = process_cpu_seconds(backend), time.process_time(), time.perf_counter()
    for n in range(WARM_UP, WARM_UP + WRITES):
        write(n)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    server = process_cpu_seconds(backend) - server_before
    print(
        json.dumps(
            {"wall_ms": wall / WRITES * 1000, "cpu_ms": cpu / WRITES * 1000, "server_ms": server / WRITES * 1000}
        )
    )


def run_phase(url: str, var_dir: Path) -> dict[str, float]:
    env = {**os.environ, "DATABASE_URL": url, "FEEDBACKHUB_VAR_DIR": str(var_dir), "LOG_LEVEL": "WARNING"}
    done = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, __file__, "--phase"], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"a write phase failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    runs: dict[str, list[dict[str, float]]] = {"project": [], "django": []}
    with throwaway_database("bench_pg_write", "PostgreSQL write") as url:
        if url is None:
            return 0
        with tempfile.TemporaryDirectory(prefix="feedbackhub-bench-pg-write-") as directory:
            var_dir = Path(directory)
            env = {**os.environ, "DATABASE_URL": url, "FEEDBACKHUB_VAR_DIR": str(var_dir)}
            progress("[PostgreSQL write] migrating a fresh database")
            subprocess.run(  # noqa: S603 - fixed argv
                [sys.executable, "manage.py", "migrate", "--verbosity", "0"], env=env, cwd=ROOT, check=True
            )
            for round_number in (1, 2):
                for kind, kind_url in (("project", url), ("django", url + DJANGO_DEFAULTS)):
                    progress(f"[PostgreSQL write] round {round_number}, {kind} settings: {WRITES:,} writes")
                    runs[kind].append(run_phase(kind_url, var_dir))
    project = min(runs["project"], key=lambda r: r["wall_ms"])
    django = min(runs["django"], key=lambda r: r["wall_ms"])

    def text(figures: dict[str, float]) -> str:
        return f"{figures['wall_ms']:.2f} ms (CPU {figures['cpu_ms']:.2f} ms, server {figures['server_ms']:.2f} ms)"

    figure = Figure(
        measure="single prediction written in process, PostgreSQL (prepared statements, a pipeline of 1 round "
        "trip): time a write (process CPU, server CPU)",
        value=text(project),
        baseline="the same writes with Django's PostgreSQL defaults (client-side binding, a transaction of 7 "
        "round trips)",
        baseline_value=text(django),
        ratio=f"{project['wall_ms'] / django['wall_ms']:.2f}×",
        goal="",
        met=None,
    )
    report(figure)
    print(f"| {figure.measure} | {figure.value} | {figure.baseline} | {figure.baseline_value} | {figure.ratio} |")
    return 0


if __name__ == "__main__":
    if "--phase" in sys.argv:
        write_phase()
        raise SystemExit(0)
    raise SystemExit(main())
