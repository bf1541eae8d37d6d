"""`make bench`: run every benchmark, then print one markdown table of all their figures.

Each script runs in its own process (its own throwaway database and settings); its detail goes to standard error as
it runs, so standard output holds only the final table: `make bench > bench.md` keeps it. The exit status is
non-zero when a script failed or a goal was not met.
"""

import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.figures import FIGURES_FILE, markdown_table, read_figures  # noqa: E402

SCRIPTS = [
    "bench_ingest.py",
    "bench_pg_write.py",
    "bench_client.py",
    "bench_scrape.py",
    "bench_dashboard.py",
    "bench_triggers.py",
    "bench_retrain.py",
]


def machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor() or platform.machine(),
    ) if Path("/proc/cpuinfo").exists() else platform.machine()  # fmt: skip
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, {system}"


def main() -> int:
    failed = []
    with tempfile.TemporaryDirectory(prefix="feedbackhub-bench-") as directory:
        figures_path = str(Path(directory) / "figures.jsonl")
        for number, script in enumerate(SCRIPTS, start=1):
            print(f"== [{number}/{len(SCRIPTS)}] {script}", file=sys.stderr, flush=True)
            started = time.monotonic()
            result = subprocess.run(
                [sys.executable, str(ROOT / "tests" / "benchmarks" / script)],
                env={**os.environ, FIGURES_FILE: figures_path},
                stdout=sys.stderr,
                check=False,
            )
            took = time.monotonic() - started
            print(f"== {script}: exit {result.returncode} after {took:.0f} s\n", file=sys.stderr, flush=True)
            if result.returncode != 0:
                failed.append(script)
        figures = read_figures(figures_path) if Path(figures_path).exists() else []
    print(f"FeedbackHub benchmarks, {datetime.now(UTC):%Y-%m-%d}, {machine()}\n")
    print(markdown_table(figures))
    missed = [f.measure for f in figures if f.met is False]
    print()
    if missed:
        print(f"Goals NOT met: {'; '.join(missed)}")
    if failed:
        print(f"Scripts that failed or missed a goal: {', '.join(failed)} (their detail is above, on standard error)")
    if not missed and not failed:
        print(f"Every goal met ({sum(f.met is True for f in figures)} figures with a goal).")
    return 1 if missed or failed else 0


if __name__ == "__main__":
    sys.exit(main())
