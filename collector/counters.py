"""Atomic increments of the quality counters, run inside the transaction of the write they count.

Each is one `INSERT ... ON CONFLICT ... DO UPDATE SET n = n + excluded.n` per table and batch (SQLite and
PostgreSQL alike), so concurrent writers never lose an increment and a retried request (which writes no row)
adds nothing. A changed outcome is a -1 for the old judgement and a +1 for the new one.
"""

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Count, F, Func, Max, Q, Sum
from django.db.models.functions import Coalesce, TruncMinute

from collector.models import ConfusionCell, FeedbackTally, ModelVersion, OutcomeMinute, Prediction, VersionTally


@dataclass(frozen=True)
class OutcomeChange:
    """One outcome added (sign +1) to or taken back (sign -1) from a version's counters."""

    model_version_id: int
    sign: int
    actual_label: str
    predicted_label: str
    is_correct: bool | None
    error: float | None
    recorded_at: datetime
    confidence: float | None = None


def _increment(
    model: type,
    keys: Sequence[str],
    values: Sequence[str],
    rows: list[tuple],
    overwrite: Sequence[str] = (),
) -> None:
    """Add each row's values to the stored ones (inserting missing rows); `overwrite` columns take the new
    value when it is not NULL."""
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = [*keys, *values, *overwrite]
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    assignments = [f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in values]
    assignments += [f"{quote(c)} = COALESCE(excluded.{quote(c)}, {table}.{quote(c)})" for c in overwrite]
    # Identifiers come from model metadata and every value is a parameter.
    insert = f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608
    sql = (
        f"{insert}VALUES {', '.join([placeholders] * len(rows))} "
        f"ON CONFLICT ({', '.join(quote(k) for k in keys)}) DO UPDATE SET {', '.join(assignments)}"
    )
    adapt = connection.ops.adapt_datetimefield_value
    params = [
        adapt(value) if isinstance(value, datetime) else value
        for row in sorted(rows, key=lambda r: r[: len(keys)])
        for value in row
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


CONFIDENCE_COLUMNS = [
    "confident",
    "confidence_sum",
    "confident_outcomes",
    "confident_outcomes_confidence_sum",
    "confident_outcomes_correct",
]


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def counters_record(
    *,
    new_predictions: Counter[int],
    outcome_changes: Sequence[OutcomeChange],
    new_confidences: Sequence[tuple[int, float]] = (),
) -> None:
    """Count new predictions per version (and the confidences of those sent with one), and apply outcome changes
    to every counter table."""
    tally: dict[int, list] = defaultdict(lambda: [0, 0, 0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0.0, 0, None])
    cells: Counter[tuple[int, str, str]] = Counter()
    minutes: dict[tuple[int, datetime], list] = defaultdict(lambda: [0, 0, 0.0, 0.0])
    for version_id, count in new_predictions.items():
        tally[version_id][0] += count
    for version_id, confidence in new_confidences:
        tally[version_id][6] += 1
        tally[version_id][7] += confidence
    for change in outcome_changes:
        correct = change.sign if change.is_correct else 0
        error = change.error or 0.0
        row = tally[change.model_version_id]
        row[1] += change.sign
        row[2] += correct
        row[3] += change.sign * error
        row[4] += change.sign * abs(error)
        row[5] += change.sign * error * error
        if change.confidence is not None:
            row[8] += change.sign
            row[9] += change.sign * change.confidence
            row[10] += correct
        if change.sign > 0:
            row[11] = max(filter(None, [row[11], change.recorded_at]))
        if change.actual_label and change.predicted_label:
            cells[(change.model_version_id, change.actual_label, change.predicted_label)] += change.sign
        bucket = minutes[(change.model_version_id, _minute(change.recorded_at))]
        bucket[0] += change.sign
        bucket[1] += correct
        bucket[2] += change.sign * abs(error)
        bucket[3] += change.sign * error * error
    _increment(
        VersionTally,
        ["model_version_id"],
        ["predictions", "outcomes", "correct", "error_sum", "abs_error_sum", "squared_error_sum", *CONFIDENCE_COLUMNS],
        [(version_id, *values) for version_id, values in tally.items()],
        overwrite=["last_outcome_at"],
    )
    _increment(
        ConfusionCell,
        ["model_version_id", "actual_label", "predicted_label"],
        ["count"],
        [(*key, count) for key, count in cells.items() if count],
    )
    _increment(
        OutcomeMinute,
        ["model_version_id", "minute"],
        ["outcomes", "correct", "abs_error_sum", "squared_error_sum"],
        [(*key, *values) for key, values in minutes.items() if any(values)],
    )


def counters_record_feedback(*, kinds: Counter[tuple[int, str]]) -> None:
    _increment(
        FeedbackTally,
        ["registered_model_id", "kind"],
        ["count"],
        [(model_id, kind, count) for (model_id, kind), count in kinds.items()],
    )


def counters_rebuild(*, model_version_ids: Sequence[int] | None = None) -> int:
    """Recompute the counters of these versions (all when None) from the stored predictions.

    For an operator who edited rows by hand, or loaded them around the services. Retention purges delete
    predictions but not their counts, so a rebuild after a purge counts only what is left. Returns the number
    of versions rebuilt.
    """
    versions = ModelVersion.objects.all()
    if model_version_ids is not None:
        versions = versions.filter(pk__in=model_version_ids)
    version_ids = list(versions.values_list("pk", flat=True))
    with transaction.atomic():
        for model in (VersionTally, ConfusionCell, OutcomeMinute):
            model.objects.filter(model_version_id__in=version_ids).delete()
        predictions = Prediction.objects.filter(model_version_id__in=version_ids)
        labelled = predictions.filter(actual__isnull=False)
        absolute = Func(F("error"), function="ABS")
        squared = F("error") * F("error")
        confident = Q(confidence__isnull=False)
        tallies = {
            row["model_version_id"]: row
            for row in labelled.values("model_version_id").annotate(
                outcomes=Count("pk"),
                correct=Count("pk", filter=Q(is_correct=True)),
                error_sum=Coalesce(Sum("error"), 0.0),
                abs_error_sum=Coalesce(Sum(absolute), 0.0),
                squared_error_sum=Coalesce(Sum(squared), 0.0),
                last_outcome_at=Max("actual_recorded_at"),
                confident_outcomes=Count("pk", filter=confident),
                confident_outcomes_confidence_sum=Coalesce(Sum("confidence", filter=confident), 0.0),
                confident_outcomes_correct=Count("pk", filter=confident & Q(is_correct=True)),
            )
        }
        VersionTally.objects.bulk_create(
            VersionTally(
                model_version_id=row["model_version_id"],
                predictions=row["predictions"],
                confident=row["confident"],
                confidence_sum=row["confidence_sum"],
                **{k: v for k, v in tallies.get(row["model_version_id"], {}).items() if k != "model_version_id"},
            )
            for row in predictions.values("model_version_id").annotate(
                predictions=Count("pk"),
                confident=Count("pk", filter=confident),
                confidence_sum=Coalesce(Sum("confidence", filter=confident), 0.0),
            )
        )
        ConfusionCell.objects.bulk_create(
            ConfusionCell(**row)
            for row in labelled.exclude(actual_label="")
            .exclude(predicted_label="")
            .values("model_version_id", "actual_label", "predicted_label")
            .annotate(count=Count("pk"))
        )
        OutcomeMinute.objects.bulk_create(
            OutcomeMinute(**row)
            for row in labelled.annotate(minute=TruncMinute("actual_recorded_at"))
            .values("model_version_id", "minute")
            .annotate(
                outcomes=Count("pk"),
                correct=Count("pk", filter=Q(is_correct=True)),
                abs_error_sum=Coalesce(Sum(absolute), 0.0),
                squared_error_sum=Coalesce(Sum(squared), 0.0),
            )
        )
    return len(version_ids)
