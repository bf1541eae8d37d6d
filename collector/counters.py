"""Atomic increments of the quality counters, run inside the transaction of the write they count.

Each is one `INSERT ... ON CONFLICT ... DO UPDATE SET n = n + excluded.n` per table and batch (SQLite and
PostgreSQL alike; on PostgreSQL a write's upserts go as one statement), so concurrent writers never lose an
increment and a retried request (which writes no row) adds nothing. A changed outcome is a -1 for the old judgement
and a +1 for the new one.
"""

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.db.models import Case, Count, F, Func, Max, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, TruncHour, TruncMinute

from collector.models import (
    LATENCY_BUCKETS_MS,
    ConfusionCell,
    ConfusionHour,
    Feedback,
    FeedbackHour,
    FeedbackKind,
    FeedbackTally,
    LatencyHour,
    ModelVersion,
    OutcomeHour,
    OutcomeMinute,
    Prediction,
    PredictionHour,
    VersionTally,
)


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
    predicted_at: datetime
    confidence: float | None = None


Increment = tuple[str, list]  # one upsert statement and its parameters


def _increment(
    model: type,
    keys: Sequence[str],
    values: Sequence[str],
    rows: list[tuple],
    overwrite: Sequence[str] = (),
) -> Increment | None:
    """The upsert that adds each row's values to the stored ones (inserting missing rows); `overwrite` columns take
    the new value when it is not NULL. None when there are no rows."""
    if not rows:
        return None
    db = connections[DEFAULT_DB_ALIAS]
    sql = _increment_sql(db.vendor, model, tuple(keys), tuple(values), tuple(overwrite), len(rows))
    adapt = db.ops.adapt_datetimefield_value
    params = [
        adapt(value) if isinstance(value, datetime) else value
        for row in sorted(rows, key=lambda r: r[: len(keys)])
        for value in row
    ]
    return sql, params


def _run_increments(increments: Iterable[Increment | None]) -> None:
    """Run the upserts, each table's at most once. On PostgreSQL they go as one statement, each upsert a
    data-modifying WITH clause: one round trip instead of one each. (PostgreSQL runs the clauses in an order of its
    own; every writer builds the statement from the same list, so concurrent writers lock the counter rows in the
    same order, and a deadlock with any other writer is retried like any write race.) SQLite has no data-modifying
    WITH, and no round trips to save."""
    statements = [increment for increment in increments if increment is not None]
    if not statements:
        return
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor == "postgresql" and len(statements) > 1:
        clauses = ", ".join(f"counted_{index} AS ({sql})" for index, (sql, _) in enumerate(statements))
        statements = [(f"WITH {clauses} SELECT 1", [param for _, params in statements for param in params])]
    with db.cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)


@cache
def _increment_sql(
    vendor: str, model: type, keys: tuple[str, ...], values: tuple[str, ...], overwrite: tuple[str, ...], rows: int
) -> str:
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    columns = [*keys, *values, *overwrite]
    placeholders = "(" + ", ".join(["%s"] * len(columns)) + ")"
    assignments = [f"{quote(c)} = {table}.{quote(c)} + excluded.{quote(c)}" for c in values]
    assignments += [f"{quote(c)} = COALESCE(excluded.{quote(c)}, {table}.{quote(c)})" for c in overwrite]
    # Identifiers come from model metadata and every value is a parameter.
    insert = f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "  # noqa: S608
    return (
        f"{insert}VALUES {', '.join([placeholders] * rows)} "
        f"ON CONFLICT ({', '.join(quote(k) for k in keys)}) DO UPDATE SET {', '.join(assignments)}"
    )


CONFIDENCE_COLUMNS = [
    "confident",
    "confidence_sum",
    "confident_outcomes",
    "confident_outcomes_confidence_sum",
    "confident_outcomes_correct",
]


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _hour(moment: datetime) -> datetime:
    # In UTC first: a client's timestamp may carry an offset that is not a whole number of hours.
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def latency_bucket(latency_ms: float) -> int:
    """Index of the histogram bucket a latency falls in: the first whose upper bound is at least the latency."""
    return bisect_left(LATENCY_BUCKETS_MS, latency_ms)


def counters_record(*, new_predictions: Sequence[Prediction], outcome_changes: Sequence[OutcomeChange]) -> None:
    """Count new predictions per version (with the confidences of those sent with one, and per hour), and apply
    outcome changes to every counter table."""
    tally: dict[int, list] = defaultdict(lambda: [0, 0, 0, 0.0, 0.0, 0.0, 0, 0.0, 0, 0.0, 0, None])
    cells: Counter[tuple[int, str, str]] = Counter()
    minutes: dict[tuple[int, datetime], list] = defaultdict(lambda: [0, 0, 0.0, 0.0])
    hours: dict[tuple[int, datetime], list] = defaultdict(lambda: [0, 0, 0.0, 0.0])
    hour_cells: Counter[tuple[int, datetime, str, str]] = Counter()
    for prediction in new_predictions:
        counts = tally[prediction.model_version_id]
        counts[0] += 1
        if prediction.confidence is not None:
            counts[6] += 1
            counts[7] += prediction.confidence
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
        for bucket in (
            minutes[(change.model_version_id, _minute(change.recorded_at))],
            hours[(change.model_version_id, _hour(change.predicted_at))],
        ):
            bucket[0] += change.sign
            bucket[1] += correct
            bucket[2] += change.sign * abs(error)
            bucket[3] += change.sign * error * error
        if change.actual_label and change.predicted_label:
            key = (change.model_version_id, _hour(change.predicted_at), change.actual_label, change.predicted_label)
            hour_cells[key] += change.sign
    version_tally = _increment(
        VersionTally,
        ["model_version_id"],
        ["predictions", "outcomes", "correct", "error_sum", "abs_error_sum", "squared_error_sum", *CONFIDENCE_COLUMNS],
        [(version_id, *values) for version_id, values in tally.items()],
        overwrite=["last_outcome_at"],
    )
    confusion_cells = _increment(
        ConfusionCell,
        ["model_version_id", "actual_label", "predicted_label"],
        ["count"],
        [(*key, count) for key, count in cells.items() if count],
    )
    outcome_minutes = _increment(
        OutcomeMinute,
        ["model_version_id", "minute"],
        ["outcomes", "correct", "abs_error_sum", "squared_error_sum"],
        [(*key, *values) for key, values in minutes.items() if any(values)],
    )
    outcome_hours = _increment(
        OutcomeHour,
        ["model_version_id", "hour"],
        ["outcomes", "correct", "abs_error_sum", "squared_error_sum"],
        [(*key, *values) for key, values in hours.items() if any(values)],
    )
    confusion_hours = _increment(
        ConfusionHour,
        ["model_version_id", "hour", "actual_label", "predicted_label"],
        ["count"],
        [(*key, count) for key, count in hour_cells.items() if count],
    )
    _run_increments(
        [
            *_prediction_hour_increments(new_predictions),
            version_tally,
            confusion_cells,
            outcome_minutes,
            outcome_hours,
            confusion_hours,
        ]
    )


def _prediction_hour_increments(rows: Sequence[Prediction]) -> list[Increment | None]:
    hours: dict[tuple[int, datetime], list] = defaultdict(lambda: [0, 0, 0.0])
    latencies: Counter[tuple[int, datetime, int]] = Counter()
    for row in rows:
        hour = _hour(row.created_at)
        bucket = hours[(row.model_version_id, hour)]
        bucket[0] += 1
        if row.latency_ms is not None:
            bucket[1] += 1
            bucket[2] += row.latency_ms
            latencies[(row.model_version_id, hour, latency_bucket(row.latency_ms))] += 1
    return [
        _increment(
            PredictionHour,
            ["model_version_id", "hour"],
            ["predictions", "latency_count", "latency_sum_ms"],
            [(*key, *values) for key, values in hours.items()],
        ),
        _increment(
            LatencyHour,
            ["model_version_id", "hour", "bucket"],
            ["count"],
            [(*key, count) for key, count in latencies.items()],
        ),
    ]


def feedback_rating(kind: str, value: object) -> int:
    """The rating a feedback row is counted under in the hourly rollup: 1-5 for ratings, else 0."""
    if kind == FeedbackKind.RATING and isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5:
        return value
    return 0


def counters_record_feedback(*, rows: Iterable[Feedback]) -> None:
    kinds: Counter[tuple[int, str]] = Counter()
    hourly: Counter[tuple[int, datetime, str, int]] = Counter()
    for row in rows:
        kinds[(row.registered_model_id, row.kind)] += 1
        hourly[(row.registered_model_id, _hour(row.created_at), row.kind, feedback_rating(row.kind, row.value))] += 1
    _run_increments(
        [
            _increment(
                FeedbackTally,
                ["registered_model_id", "kind"],
                ["count"],
                [(*key, count) for key, count in kinds.items()],
            ),
            _increment(
                FeedbackHour,
                ["registered_model_id", "hour", "kind", "rating"],
                ["count"],
                [(*key, count) for key, count in hourly.items()],
            ),
        ]
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
    model_ids = set(versions.values_list("registered_model_id", flat=True))
    with transaction.atomic():
        _rebuild_feedback(model_ids)
        rebuilt = (VersionTally, ConfusionCell, OutcomeMinute, PredictionHour, LatencyHour, OutcomeHour, ConfusionHour)
        for model in rebuilt:
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
        outcome_sums = {
            "outcomes": Count("pk"),
            "correct": Count("pk", filter=Q(is_correct=True)),
            "abs_error_sum": Coalesce(Sum(absolute), 0.0),
            "squared_error_sum": Coalesce(Sum(squared), 0.0),
        }
        OutcomeMinute.objects.bulk_create(
            OutcomeMinute(**row)
            for row in labelled.annotate(minute=TruncMinute("actual_recorded_at"))
            .values("model_version_id", "minute")
            .annotate(**outcome_sums)
        )
        _rebuild_hours(predictions, labelled, outcome_sums)
    return len(version_ids)


def _rebuild_feedback(model_ids: set[int]) -> None:
    FeedbackTally.objects.filter(registered_model_id__in=model_ids).delete()
    FeedbackHour.objects.filter(registered_model_id__in=model_ids).delete()
    counters_record_feedback(
        rows=Feedback.objects.filter(registered_model_id__in=model_ids)
        .only("registered_model_id", "created_at", "kind", "value")
        .iterator(chunk_size=5000)
    )


def _rebuild_hours(predictions: QuerySet[Prediction], labelled: QuerySet[Prediction], outcome_sums: dict) -> None:
    predicted_hour = TruncHour("created_at", tzinfo=UTC)
    PredictionHour.objects.bulk_create(
        PredictionHour(**row)
        for row in predictions.annotate(hour=predicted_hour)
        .values("model_version_id", "hour")
        .annotate(
            predictions=Count("pk"), latency_count=Count("latency_ms"), latency_sum_ms=Coalesce(Sum("latency_ms"), 0.0)
        )
    )
    bucket = Case(
        *(When(latency_ms__lte=bound, then=Value(index)) for index, bound in enumerate(LATENCY_BUCKETS_MS)),
        default=Value(len(LATENCY_BUCKETS_MS)),
    )
    LatencyHour.objects.bulk_create(
        LatencyHour(**row)
        for row in predictions.filter(latency_ms__isnull=False)
        .annotate(hour=predicted_hour, bucket=bucket)
        .values("model_version_id", "hour", "bucket")
        .annotate(count=Count("pk"))
    )
    OutcomeHour.objects.bulk_create(
        OutcomeHour(**row)
        for row in labelled.annotate(hour=predicted_hour).values("model_version_id", "hour").annotate(**outcome_sums)
    )
    ConfusionHour.objects.bulk_create(
        ConfusionHour(**row)
        for row in labelled.exclude(actual_label="")
        .exclude(predicted_label="")
        .annotate(hour=predicted_hour)
        .values("model_version_id", "hour", "actual_label", "predicted_label")
        .annotate(count=Count("pk"))
    )
