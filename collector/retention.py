"""Retention: delete predictions and feedback older than their model's `retention_days`, in small chunks.

Rows that other parts of the hub still need are kept: each dotted path in FEEDBACKHUB_RETENTION_PROTECTORS
(predictions) and FEEDBACKHUB_RETENTION_FEEDBACK_PROTECTORS (feedback) names a function
`(registered_model) -> QuerySet of ids to keep`; the review and retraining apps add theirs.
Quality counters are a lifetime record: purging does not change them.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.module_loading import import_string

from collector.models import Feedback, PendingOutcome, Prediction, RegisteredModel

logger = logging.getLogger(__name__)
Progress = Callable[[str, int], None]


@dataclass(frozen=True)
class PurgeResult:
    model: str
    cutoff: datetime | None
    predictions: int = 0
    feedback: int = 0
    pending_outcomes: int = 0


def _protected(setting: list[str], registered_model: RegisteredModel) -> list[QuerySet]:
    return [import_string(path)(registered_model) for path in setting]


def _delete_in_chunks(rows: QuerySet, chunk_size: int, on_progress: Progress | None, label: str) -> int:
    deleted = 0
    while True:
        # One short transaction per chunk, so writers are never held up for long.
        with transaction.atomic():
            ids = list(rows.order_by("pk").values_list("pk", flat=True)[:chunk_size])
            if not ids:
                return deleted
            rows.model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
        if on_progress is not None:
            on_progress(label, deleted)


def retention_purge(
    *,
    registered_model: RegisteredModel,
    now: datetime | None = None,
    chunk_size: int = 1000,
    dry_run: bool = False,
    on_progress: Progress | None = None,
) -> PurgeResult:
    if registered_model.retention_days is None:
        return PurgeResult(registered_model.name, None)
    cutoff = (now or timezone.now()) - timedelta(days=registered_model.retention_days)
    predictions = Prediction.objects.filter(registered_model=registered_model, created_at__lt=cutoff)
    for protected in _protected(settings.FEEDBACKHUB_RETENTION_PROTECTORS, registered_model):
        predictions = predictions.exclude(pk__in=protected)
    feedback = Feedback.objects.filter(registered_model=registered_model, created_at__lt=cutoff).exclude(
        prediction__in=Prediction.objects.filter(registered_model=registered_model, created_at__gte=cutoff)
    )
    for protected in _protected(settings.FEEDBACKHUB_RETENTION_FEEDBACK_PROTECTORS, registered_model):
        feedback = feedback.exclude(pk__in=protected)
    pending = PendingOutcome.objects.filter(registered_model=registered_model, created_at__lt=cutoff)
    if dry_run:
        return PurgeResult(registered_model.name, cutoff, predictions.count(), feedback.count(), pending.count())
    result = PurgeResult(
        registered_model.name,
        cutoff,
        predictions=_delete_in_chunks(predictions, chunk_size, on_progress, "predictions"),
        feedback=_delete_in_chunks(feedback, chunk_size, on_progress, "feedback"),
        pending_outcomes=_delete_in_chunks(pending, chunk_size, on_progress, "pending outcomes"),
    )
    logger.info("Retention purge of %s before %s: %s", registered_model.name, cutoff.isoformat(), result)
    return result


def retention_purge_all(*, now: datetime | None = None) -> list[PurgeResult]:
    models = RegisteredModel.objects.filter(retention_days__isnull=False)
    return [retention_purge(registered_model=model, now=now) for model in models]
