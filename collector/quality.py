"""Quality figures from confusion-matrix cells and regression sums, as scikit-learn computes them
(a ratio whose denominator is zero is 0, like `zero_division=0`)."""

import math
from collections.abc import Mapping
from dataclasses import dataclass

POSITIVE = "1"
NEGATIVE = "0"
Cells = Mapping[tuple[str, str], int]  # (actual label, predicted label) -> count


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


@dataclass(frozen=True)
class BinaryCounts:
    true_positives: int
    true_negatives: int
    false_positives: int
    false_negatives: int

    @classmethod
    def from_cells(cls, cells: Cells) -> "BinaryCounts":
        return cls(
            true_positives=cells.get((POSITIVE, POSITIVE), 0),
            true_negatives=cells.get((NEGATIVE, NEGATIVE), 0),
            false_positives=cells.get((NEGATIVE, POSITIVE), 0),
            false_negatives=cells.get((POSITIVE, NEGATIVE), 0),
        )

    @property
    def total(self) -> int:
        return self.true_positives + self.true_negatives + self.false_positives + self.false_negatives


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f1: float
    support: int = 0


@dataclass(frozen=True)
class ClassificationQuality:
    accuracy: float
    precision: float
    recall: float
    f1: float
    per_class: dict[str, Scores]


def binary_quality(counts: BinaryCounts) -> ClassificationQuality:
    precision = _ratio(counts.true_positives, counts.true_positives + counts.false_positives)
    recall = _ratio(counts.true_positives, counts.true_positives + counts.false_negatives)
    accuracy = _ratio(counts.true_positives + counts.true_negatives, counts.total)
    return ClassificationQuality(accuracy, precision, recall, _f1(precision, recall), per_class={})


def multiclass_quality(cells: Cells) -> ClassificationQuality:
    """Accuracy, macro-averaged precision/recall/F1 over every class seen, and each class's scores."""
    labels = sorted({label for pair in cells for label in pair})
    total = sum(cells.values())
    correct = sum(count for (actual, predicted), count in cells.items() if actual == predicted)
    per_class: dict[str, Scores] = {}
    for label in labels:
        hits = cells.get((label, label), 0)
        predicted = sum(count for (_, guess), count in cells.items() if guess == label)
        support = sum(count for (actual, _), count in cells.items() if actual == label)
        precision, recall = _ratio(hits, predicted), _ratio(hits, support)
        per_class[label] = Scores(precision, recall, _f1(precision, recall), support)
    count = len(per_class)
    return ClassificationQuality(
        accuracy=_ratio(correct, total),
        precision=_ratio(sum(s.precision for s in per_class.values()), count),
        recall=_ratio(sum(s.recall for s in per_class.values()), count),
        f1=_ratio(sum(s.f1 for s in per_class.values()), count),
        per_class=per_class,
    )


@dataclass(frozen=True)
class RegressionQuality:
    mae: float
    rmse: float


def regression_quality(count: int, abs_error_sum: float, squared_error_sum: float) -> RegressionQuality:
    return RegressionQuality(
        mae=_ratio(abs_error_sum, count), rmse=math.sqrt(max(_ratio(squared_error_sum, count), 0.0))
    )
