"""The rows of `make bench`'s one table: every figure beside a baseline measured in the same run.

Each benchmark script prints its own detail and calls `report(...)` once per figure. Run alone, a script only prints;
run by `run_all.py`, which sets FEEDBACKHUB_BENCH_FIGURES to a file, its figures are also appended there as JSON
lines, and `run_all.py` prints them as one markdown table.
"""

import json
import os
from dataclasses import asdict, dataclass

FIGURES_FILE = "FEEDBACKHUB_BENCH_FIGURES"


@dataclass(frozen=True)
class Figure:
    measure: str  # what was measured, with its conditions
    value: str  # the figure, formatted with its unit
    baseline: str  # what it is set beside, measured in the same run
    baseline_value: str
    ratio: str  # how the two compare, e.g. "1.35×" (the script says which way round)
    goal: str  # e.g. "ratio ≥ 1.0×", or "" when the figure has no goal
    met: bool | None  # None when there is no goal


def report(figure: Figure) -> None:
    path = os.environ.get(FIGURES_FILE)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(figure), ensure_ascii=False) + "\n")


def read_figures(path: str) -> list[Figure]:
    with open(path, encoding="utf-8") as lines:
        return [Figure(**json.loads(line)) for line in lines if line.strip()]


def markdown_table(figures: list[Figure]) -> str:
    rows = [
        "| measure | figure | baseline (same run) | baseline figure | ratio | goal | met |",
        "|---|---:|---|---:|---:|---|---|",
    ]
    for f in figures:
        met = "" if f.met is None else ("yes" if f.met else "**NO**")
        rows.append(f"| {f.measure} | {f.value} | {f.baseline} | {f.baseline_value} | {f.ratio} | {f.goal} | {met} |")
    return "\n".join(rows)
