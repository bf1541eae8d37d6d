"""Which unlabelled predictions a reviewer should label first.

Each of a model's most recent unlabelled predictions (no outcome and no reviewer label) gets three signals in
[0, 1] and a score:

    score = 0.5 * uncertainty + 0.4 * disagreement + 0.1 * drift

- uncertainty: how unsure the model was.
  - With `attributes["probabilities"]` ({label: probability} over k >= 2 classes):
    `(1 - p_max) / (1 - 1/k)`, so a sure prediction gives 0 and a uniform distribution gives 1.
  - Otherwise from `confidence` c, the model's confidence in the class it predicted: for a binary model
    `2 * (1 - c)` (c = 0.5 is a coin flip and gives 1; below 0.5 counts as 1 too), for other tasks `1 - c`.
  - Neither recorded: 0.5.
- disagreement: what people said about the prediction. 1 for a thumbs down, a correction or a rating of 1-2;
  0.5 for a rating of 3, or a comment without any thumbs up or rating of 4-5; 0 otherwise. The strongest
  signal wins.
- drift: how far the input lies in the part of the data that drifted (`collector.selectors.input_drift_scores`):
  for each input feature that drifted in the version's latest drift check, the lift of the bin the value falls
  in, 1 - (reference share / current share), so values from a region that has grown since the reference score
  near 1; the largest over the drifted features. 0 while the version's latest check found no drifted input.

The queue is highest score first, newest (highest id) first among equal scores. Only the `candidates` most
recent unlabelled predictions are scored, so the cost stays the same however large the table grows.
"""

import heapq
import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from collector.models import Feedback, FeedbackKind, ModelVersion, Prediction, RegisteredModel, TaskType
from collector.selectors import input_drift_scores

UNCERTAINTY_WEIGHT = 0.5
DISAGREEMENT_WEIGHT = 0.4
DRIFT_WEIGHT = 0.1
UNKNOWN_UNCERTAINTY = 0.5
LOW_RATING_MAX = 2
NEUTRAL_RATING = 3


@dataclass(frozen=True)
class QueueItem:
    prediction_id: int
    score: float
    uncertainty: float
    disagreement: float
    drift: float
    reasons: list[str]


@dataclass(frozen=True)
class _Signal:
    value: float
    reasons: list[str]


def label_queue(
    *,
    registered_model: RegisteredModel,
    limit: int = 50,
    candidates: int = 5000,
    drift_scores: Mapping[int, float] | None = None,
) -> list[QueueItem]:
    """The model's unlabelled predictions a reviewer should label first, best first (see the module docstring)."""
    if limit < 1 or candidates < 1:
        return []
    rows = _recent_unlabelled(registered_model=registered_model, candidates=candidates)
    feedback = _feedback_by_prediction(prediction_ids=[row["id"] for row in rows])
    if drift_scores is None:
        drift_scores = input_drift_scores(predictions=[(row["id"], row["model_version_id"]) for row in rows])
    binary = registered_model.task_type == TaskType.BINARY
    items = (
        _queue_item(
            row=row,
            feedback=feedback.get(row["id"], []),
            binary=binary,
            drift=_clip(drift_scores.get(row["id"], 0.0)),
        )
        for row in rows
    )
    return heapq.nsmallest(limit, items, key=lambda item: (-item.score, -item.prediction_id))


def _recent_unlabelled(*, registered_model: RegisteredModel, candidates: int) -> list[dict[str, Any]]:
    # Filtering on the version ids (not the model) lets the database use the partial index
    # "prediction_unlabelled" on (model_version, id); with one version it reads just `candidates` index entries.
    versions = ModelVersion.objects.filter(registered_model=registered_model).order_by()  # no join for the name sort
    version_ids = list(versions.values_list("id", flat=True))
    if not version_ids:
        return []
    return list(
        Prediction.objects.filter(model_version_id__in=version_ids, actual__isnull=True, training_label__isnull=True)
        .order_by("-id")
        # Only the probabilities key: `attributes` is free-form and may be large.
        .values("id", "model_version_id", "confidence", "attributes__probabilities")[:candidates]
    )


def _feedback_by_prediction(*, prediction_ids: list[int]) -> dict[int, list[tuple[str, Any]]]:
    feedback: dict[int, list[tuple[str, Any]]] = {}
    if not prediction_ids:
        return feedback
    rows = (
        Feedback.objects.filter(prediction_id__in=prediction_ids)
        .order_by()  # the default ordering would sort for nothing
        .values_list("prediction_id", "kind", "value")
    )
    for prediction_id, kind, value in rows:
        feedback.setdefault(prediction_id, []).append((kind, value))
    return feedback


def _queue_item(*, row: Mapping[str, Any], feedback: list[tuple[str, Any]], binary: bool, drift: float) -> QueueItem:
    uncertainty = _uncertainty(
        probabilities=row["attributes__probabilities"], confidence=row["confidence"], binary=binary
    )
    disagreement = _disagreement(feedback=feedback)
    score = UNCERTAINTY_WEIGHT * uncertainty.value + DISAGREEMENT_WEIGHT * disagreement.value + DRIFT_WEIGHT * drift
    drift_reasons = [f"drift: {drift:.2f}"] if drift > 0 else []
    return QueueItem(
        prediction_id=row["id"],
        score=score,
        uncertainty=uncertainty.value,
        disagreement=disagreement.value,
        drift=drift,
        reasons=[*uncertainty.reasons, *disagreement.reasons, *drift_reasons],
    )


def _uncertainty(*, probabilities: Any, confidence: float | None, binary: bool) -> _Signal:
    valid_probabilities = _valid_probabilities(probabilities)
    if valid_probabilities is not None:
        top, classes = max(valid_probabilities), len(valid_probabilities)
        value = _clip((1 - top) / (1 - 1 / classes))
        return _Signal(value, [f"{_sureness(value)}: top probability {top:.2f} over {classes} classes"])
    if confidence is not None:
        value = _clip(2 * (1 - confidence) if binary else 1 - confidence)
        return _Signal(value, [f"{_sureness(value)}: confidence {confidence:.2f}"])
    return _Signal(UNKNOWN_UNCERTAINTY, ["confidence unknown"])


def _valid_probabilities(probabilities: Any) -> list[float] | None:
    """The probabilities as numbers when they are a {label: probability} dict over 2+ classes, else None."""
    if not isinstance(probabilities, dict) or len(probabilities) < 2:
        return None
    values = list(probabilities.values())
    if not all(_is_number(value) and 0 <= value <= 1 for value in values):
        return None
    return [float(value) for value in values]


def _sureness(uncertainty: float) -> str:
    return "uncertain" if uncertainty >= UNKNOWN_UNCERTAINTY else "confident"


def _disagreement(*, feedback: Iterable[tuple[str, Any]]) -> _Signal:
    kinds: Counter[str] = Counter()
    low_ratings: set[int] = set()
    neutral_rating = positive = False
    for kind, value in feedback:
        kinds[kind] += 1
        if kind != FeedbackKind.RATING or not _is_number(value):
            continue
        if value <= LOW_RATING_MAX:
            low_ratings.add(int(value))
        elif value == NEUTRAL_RATING:
            neutral_rating = True
        else:
            positive = True
    positive = positive or kinds[FeedbackKind.THUMBS_UP] > 0

    strong = [
        *_counted(kinds[FeedbackKind.THUMBS_DOWN], one="thumbs down from a user", many="thumbs down {} times"),
        *_counted(kinds[FeedbackKind.CORRECTION], one="correction from a user", many="{} corrections from users"),
        *(f"low rating {rating}/5" for rating in sorted(low_ratings)),
    ]
    if strong:
        return _Signal(1.0, strong)
    # A comment next to a thumbs up or a good rating is most likely praise, so only a lone comment counts.
    comments = [] if positive else _counted(kinds[FeedbackKind.COMMENT], one="comment from a user", many="{} comments")
    neutral = [*(["neutral rating 3/5"] if neutral_rating else []), *comments]
    return _Signal(0.5 if neutral else 0.0, neutral)


def _counted(count: int, *, one: str, many: str) -> list[str]:
    if count == 0:
        return []
    return [one if count == 1 else many.format(count)]


def _is_number(value: Any) -> bool:
    # bool is an int subclass, but true/false is not a rating or a probability.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0
