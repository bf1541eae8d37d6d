"""Scoring a candidate model against held-out outcomes, a naive baseline and the current champion."""

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from sklearn import metrics

from loop.trainers import CLASSIFICATION_TASKS, canonical_targets, check_trainable_task, sortable_labels

CLASSIFICATION_METRICS = frozenset({"accuracy", "f1", "precision", "recall"})
REGRESSION_METRICS = frozenset({"mae", "rmse"})
POSITIVE_LABEL = "1"


class MetricError(ValueError):
    """A metric that does not exist or does not fit the task type."""


def baseline_predictions(*, task_type: str, train_targets: Sequence[Any], count: int) -> list[Any]:
    """`count` copies of the most common training label (ties: the smallest label) or of the mean target."""
    check_trainable_task(task_type=task_type)
    if not len(train_targets):
        raise ValueError("A baseline needs at least one training target.")
    targets = canonical_targets(task_type=task_type, targets=train_targets)
    if task_type in CLASSIFICATION_TASKS:
        counts = Counter(targets.tolist())
        top = max(counts.values())
        # Ties broken by label, not by order of arrival, so the baseline does not depend on row order.
        guess: Any = min(label for label, seen in counts.items() if seen == top)
    else:
        guess = float(targets.mean())
    return [guess] * count


def score(*, task_type: str, metric: str, targets: Sequence[Any], predictions: Sequence[Any]) -> float:
    """The metric for predictions against targets, both made canonical first (labels "0"/"1", str, or float)."""
    check_trainable_task(task_type=task_type)
    expected = CLASSIFICATION_METRICS if task_type in CLASSIFICATION_TASKS else REGRESSION_METRICS
    if metric not in expected:
        raise MetricError(f"Metric '{metric}' does not fit a {task_type} model; use one of {sorted(expected)}.")
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions.")
    if not len(targets):
        raise ValueError("Nothing to score: no targets.")
    y_true = sortable_labels(canonical_targets(task_type=task_type, targets=targets))
    y_pred = sortable_labels(canonical_targets(task_type=task_type, targets=predictions))
    return float(_metric_function(task_type=task_type, metric=metric)(y_true, y_pred))


def higher_is_better(metric: str) -> bool:
    if metric in CLASSIFICATION_METRICS:
        return True
    if metric in REGRESSION_METRICS:
        return False
    raise MetricError(f"Unknown metric '{metric}'; known: {sorted(CLASSIFICATION_METRICS | REGRESSION_METRICS)}.")


def improvement(*, metric: str, candidate: float, champion: float) -> float:
    """How much better the candidate scores than the champion; positive when it is better."""
    return candidate - champion if higher_is_better(metric) else champion - candidate


def _metric_function(*, task_type: str, metric: str) -> Callable[[Sequence[Any], Sequence[Any]], float]:
    if metric == "accuracy":
        return metrics.accuracy_score
    if metric == "mae":
        return metrics.mean_absolute_error
    if metric == "rmse":
        return metrics.root_mean_squared_error
    scorer = {"f1": metrics.f1_score, "precision": metrics.precision_score, "recall": metrics.recall_score}[metric]
    if task_type == "binary":
        return lambda y_true, y_pred: scorer(y_true, y_pred, pos_label=POSITIVE_LABEL, zero_division=0)
    return lambda y_true, y_pred: scorer(y_true, y_pred, average="macro", zero_division=0)
