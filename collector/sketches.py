"""Drift sketches and statistics: pure functions, no database.

A sketch summarises one feature of a sample in bounded space. A numeric feature is counts in bins whose edges are
the reference sample's deciles (the outer bins are open-ended); a categorical one is counts of the reference's most
frequent categories plus one "other" count. Current windows count into the reference's bins, so two windows merge
by adding their counts, and every statistic compares two count vectors of the same length.
"""

import math
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

import numpy as np
from scipy import stats

NUMERIC = "numeric"
CATEGORICAL = "categorical"
OTHER = "__other__"
BINS = 10
MAX_FEATURES = 50  # per reference sketch: the most frequent feature names
MAX_CATEGORIES = 20  # per categorical feature, plus OTHER
MAX_FEATURES_PER_INPUT = 100  # leaves read from one input
MAX_NODES_PER_INPUT = 1000  # containers and leaves visited in one input, however it is shaped
MAX_DEPTH = 4
MAX_NAME = 100
MAX_CATEGORY = 64
PSI_EPSILON = 1e-4

Value = float | str
Spec = dict[str, Any]  # {"kind": NUMERIC, "edges": [...], "counts": [...]} or {"kind": CATEGORICAL, "categories": ...}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return number if math.isfinite(number) else None


def _scalar(value: Any) -> Value | None:
    number = _number(value)
    if number is not None:
        return number
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value[:MAX_CATEGORY]
    return None


def _children(name: str, item: dict | list) -> list[tuple[str, Any]]:
    if isinstance(item, dict):
        pairs = islice(item.items(), MAX_FEATURES_PER_INPUT)
        return [(f"{name}.{key}" if name else str(key), child) for key, child in pairs]
    return [(f"{name}[{index}]", child) for index, child in enumerate(islice(item, MAX_FEATURES_PER_INPUT))]


def input_features(value: Any) -> dict[str, Value]:
    """The features of one input, read with a fixed budget whatever its size or shape.

    A list gives "x[0]", "x[1]", ...; an object its flattened keys ("a.b", "a[0]"); a number "x"; a string only its
    "length". Numbers are numeric features, strings and booleans categorical; null, NaN, infinities, integers too
    large for a float and anything nested deeper than MAX_DEPTH are left out.
    """
    if isinstance(value, str):
        return {"length": float(len(value))}
    if not isinstance(value, dict | list):
        scalar = _scalar(value)
        return {} if scalar is None else {"x": scalar}
    features: dict[str, Value] = {}
    stack: list[tuple[str, Any, int]] = [("x" if isinstance(value, list) else "", value, 0)]
    visited = 0
    while stack and visited < MAX_NODES_PER_INPUT and len(features) < MAX_FEATURES_PER_INPUT:
        name, item, depth = stack.pop()
        visited += 1
        if isinstance(item, dict | list):
            if depth < MAX_DEPTH:
                stack.extend((child_name, child, depth + 1) for child_name, child in reversed(_children(name, item)))
            continue
        scalar = _scalar(item)
        if scalar is not None:
            features[name[:MAX_NAME]] = scalar
    return features


def output_features(*, predicted_label: str, prediction: Any, confidence: float | None) -> dict[str, Value]:
    """The model's side: its "score" (confidence) and its "prediction" (the class label, or the number of a
    regression)."""
    features: dict[str, Value] = {}
    score = _number(confidence)
    if score is not None:
        features["score"] = score
    if predicted_label:
        features["prediction"] = predicted_label[:MAX_CATEGORY]
    elif (number := _number(prediction)) is not None:
        features["prediction"] = number
    return features


def _category(value: Value) -> str:
    return value if isinstance(value, str) else format(value, "g")


def feature_reference(values: Sequence[Value]) -> Spec:
    """The reference sketch of one feature: numeric when most of its values are numbers, else categorical."""
    numbers = [value for value in values if isinstance(value, float)]
    if len(numbers) * 2 > len(values):
        quantiles = np.quantile(np.asarray(numbers), np.linspace(0, 1, BINS + 1)[1:-1])
        spec: Spec = {"kind": NUMERIC, "edges": sorted({float(q) for q in quantiles})}
    else:
        counts = Counter(_category(value) for value in values)
        ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
        spec = {"kind": CATEGORICAL, "categories": [name for name, _ in ranked[:MAX_CATEGORIES] if name != OTHER]}
    spec["counts"] = counts_of(spec, values)
    return spec


def reference_sketch(samples: Iterable[Mapping[str, Value]]) -> dict[str, Spec]:
    """Sketches of the MAX_FEATURES feature names seen most often across the samples."""
    values: dict[str, list[Value]] = {}
    for sample in samples:
        for name, value in sample.items():
            values.setdefault(name, []).append(value)
    chosen = sorted(values, key=lambda name: (-len(values[name]), name))[:MAX_FEATURES]
    return {name: feature_reference(values[name]) for name in sorted(chosen)}


def bin_count(spec: Spec) -> int:
    return len(spec["edges"]) + 1 if spec["kind"] == NUMERIC else len(spec["categories"]) + 1


class Binner:
    """Puts values into a reference's bins; built once per reference, used for every row of a window."""

    def __init__(self, specs: Mapping[str, Spec]) -> None:
        self.sizes = {name: bin_count(spec) for name, spec in specs.items()}
        self._edges = {name: spec["edges"] for name, spec in specs.items() if spec["kind"] == NUMERIC}
        self._categories = {
            name: {category: index for index, category in enumerate(spec["categories"])}
            for name, spec in specs.items()
            if spec["kind"] == CATEGORICAL
        }

    def bin(self, name: str, value: Value) -> int | None:
        """The bin of `value`; None for a feature not in the reference or a non-number of a numeric one."""
        edges = self._edges.get(name)
        if edges is not None:
            return bisect_left(edges, value) if isinstance(value, float) else None
        categories = self._categories.get(name)
        if categories is None:
            return None
        return categories.get(_category(value), len(categories))

    def add(self, counts: dict[str, list[int]], features: Mapping[str, Value]) -> None:
        for name, value in features.items():
            index = self.bin(name, value)
            if index is not None:
                counts.setdefault(name, [0] * self.sizes[name])[index] += 1


def counts_of(spec: Spec, values: Iterable[Value]) -> list[int]:
    binner = Binner({"f": spec})
    counts: dict[str, list[int]] = {"f": [0] * bin_count(spec)}
    for value in values:
        binner.add(counts, {"f": value})
    return counts["f"]


def merged(total: dict[str, list[int]], more: Mapping[str, Sequence[int]]) -> dict[str, list[int]]:
    """Add `more`'s counts into `total` (both in the same reference's bins)."""
    for name, counts in more.items():
        into = total.setdefault(name, [0] * len(counts))
        for index, count in enumerate(counts[: len(into)]):
            into[index] += count
    return total


# --- statistics -------------------------------------------------------------------------------------


def psi(reference: Sequence[int], current: Sequence[int]) -> float:
    """Population stability index: sum of (q - p) * ln(q / p) over bins, empty bins counted as PSI_EPSILON."""
    p = np.maximum(np.asarray(reference, dtype=float) / sum(reference), PSI_EPSILON)
    q = np.maximum(np.asarray(current, dtype=float) / sum(current), PSI_EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(reference: Sequence[int], current: Sequence[int]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value from binned counts.

    The binned statistic is the largest gap between the two empirical CDFs at the bin edges, so it is at most the
    exact one and short of it by no more than either sample's share in one bin. The p-value is scipy's asymptotic
    two-sample distribution (as `ks_2samp(method="asymp")`).
    """
    n, m = sum(reference), sum(current)
    gaps = np.abs(np.cumsum(reference) / n - np.cumsum(current) / m)
    statistic = float(np.max(gaps))
    return statistic, float(stats.kstwo.sf(statistic, round(n * m / (n + m))))


def chi_square(reference: Sequence[int], current: Sequence[int]) -> tuple[float, float]:
    """Chi-square test that the two samples come from the same categorical distribution (a 2 x k table)."""
    table = np.asarray([reference, current], dtype=float)
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)
