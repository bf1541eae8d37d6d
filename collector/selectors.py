"""Reads: what the API and the admin list and look up."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from django.conf import settings
from django.db.models import CharField, Expression, F, Q, QuerySet, Sum
from django.db.models.functions import Cast, Substr
from django.utils import timezone

from collector.models import (
    LATENCY_BUCKETS_MS,
    ApiKey,
    ConfusionCell,
    ConfusionHour,
    DriftCheck,
    DriftReference,
    DriftReport,
    DriftWindowHour,
    Feedback,
    FeedbackHour,
    FeedbackTally,
    LatencyHour,
    ModelVersion,
    OutcomeHour,
    OutcomeMinute,
    Prediction,
    PredictionHour,
    RegisteredModel,
    TaskType,
    VersionTally,
)
from collector.quality import (
    BinaryCounts,
    ClassificationQuality,
    RegressionQuality,
    binary_quality,
    multiclass_quality,
    regression_quality,
)
from collector.services import Actor
from collector.sketches import Binner, input_features, merged


def actor_for_api_key(api_key: ApiKey, *, read_now: bool = True) -> Actor:
    """The writer an API key stands for; `read_now` False: an all-models key taken from this process's memory, which
    its write confirms (`services.api_key_authenticate_for_write`)."""
    if api_key.all_models:
        remembered = None if read_now else (api_key.pk, api_key.key_sha256)
        return Actor(label=f"key:{api_key.name}", unconfirmed_key=remembered)
    allowed = frozenset(api_key.allowed_models.values_list("pk", flat=True))
    return Actor(label=f"key:{api_key.name}", allowed_model_ids=allowed)


def prediction_list(*, actor: Actor | None) -> QuerySet[Prediction]:
    """Predictions the reader may see: all for staff, the key's models for a scoped key."""
    rows = Prediction.objects.select_related("registered_model", "model_version")
    if actor is not None and actor.allowed_model_ids is not None:
        rows = rows.filter(registered_model_id__in=actor.allowed_model_ids)
    return rows


def feedback_list(*, actor: Actor | None) -> QuerySet[Feedback]:
    rows = Feedback.objects.select_related("registered_model")
    if actor is not None and actor.allowed_model_ids is not None:
        rows = rows.filter(registered_model_id__in=actor.allowed_model_ids)
    return rows


def registered_model_list(*, actor: Actor | None) -> QuerySet[RegisteredModel]:
    rows = RegisteredModel.objects.prefetch_related("versions")
    if actor is not None and actor.allowed_model_ids is not None:
        rows = rows.filter(pk__in=actor.allowed_model_ids)
    return rows


@dataclass(frozen=True)
class WindowQuality:
    outcomes: int
    accuracy: float | None
    mae: float | None


@dataclass(frozen=True)
class ConfidenceQuality:
    """What the model's confidence promised against what happened (classification with confidences only).

    `estimated_accuracy` is the mean confidence of the predictions still waiting for their outcome: the accuracy
    they will have if the model is as well calibrated as it was on the predictions whose outcome is known, where
    `labelled_confidence` (the mean confidence) can be compared with `labelled_accuracy` (the share right).
    """

    pending: int
    estimated_accuracy: float | None
    labelled: int
    labelled_confidence: float | None
    labelled_accuracy: float | None


@dataclass(frozen=True)
class VersionQuality:
    model: str
    version: str
    task_type: str
    predictions: int
    outcomes: int
    last_outcome_at: datetime | None
    cells: dict[tuple[str, str], int]
    binary: BinaryCounts | None
    classification: ClassificationQuality | None
    regression: RegressionQuality | None
    windows: dict[str, WindowQuality]
    confidence: ConfidenceQuality | None = None


def _confidence_quality(tally: VersionTally, task_type: str) -> ConfidenceQuality | None:
    if task_type == TaskType.REGRESSION or not tally.confident:
        return None
    pending = tally.confident - tally.confident_outcomes
    pending_sum = tally.confidence_sum - tally.confident_outcomes_confidence_sum
    labelled = tally.confident_outcomes
    return ConfidenceQuality(
        pending=pending,
        estimated_accuracy=pending_sum / pending if pending else None,
        labelled=labelled,
        labelled_confidence=tally.confident_outcomes_confidence_sum / labelled if labelled else None,
        labelled_accuracy=tally.confident_outcomes_correct / labelled if labelled else None,
    )


def _window(task_type: str, outcomes: int, correct: int, abs_error_sum: float) -> WindowQuality:
    if not outcomes:
        return WindowQuality(0, None, None)
    if task_type == TaskType.REGRESSION:
        return WindowQuality(outcomes, None, abs_error_sum / outcomes)
    return WindowQuality(outcomes, correct / outcomes, None)


def _last_hour_windows(version_ids: list[int]) -> dict[int, tuple[int, int, float]]:
    since = (timezone.now() - timedelta(hours=1)).replace(second=0, microsecond=0)
    rows = (
        OutcomeMinute.objects.filter(model_version_id__in=version_ids, minute__gt=since)
        .values("model_version_id")
        .annotate(outcomes=Sum("outcomes"), correct=Sum("correct"), abs_error_sum=Sum("abs_error_sum"))
    )
    return {row["model_version_id"]: (row["outcomes"], row["correct"], row["abs_error_sum"]) for row in rows}


def _last_outcomes_window(version_id: int, size: int) -> tuple[int, int, float]:
    recent = (
        Prediction.objects.filter(model_version_id=version_id, actual_recorded_at__isnull=False)
        .order_by("-actual_recorded_at")
        .values_list("is_correct", "error")[:size]
    )
    rows = list(recent)
    return len(rows), sum(1 for correct, _ in rows if correct), sum(abs(error or 0.0) for _, error in rows)


def _quality(
    tally: VersionTally, cells: dict[tuple[str, str], int], windows: dict[str, WindowQuality]
) -> VersionQuality:
    version = tally.model_version
    task_type = version.registered_model.task_type
    binary = classification = regression = None
    if tally.outcomes and task_type == TaskType.BINARY:
        binary = BinaryCounts.from_cells(cells)
        classification = binary_quality(binary)
    elif tally.outcomes and task_type == TaskType.MULTICLASS:
        classification = multiclass_quality(cells)
    elif tally.outcomes and task_type == TaskType.GENERATIVE:
        classification = ClassificationQuality(tally.correct / tally.outcomes, 0.0, 0.0, 0.0, per_class={})
    elif tally.outcomes and task_type == TaskType.REGRESSION:
        regression = regression_quality(tally.outcomes, tally.abs_error_sum, tally.squared_error_sum)
    return VersionQuality(
        model=version.registered_model.name,
        version=version.version,
        task_type=task_type,
        predictions=tally.predictions,
        outcomes=tally.outcomes,
        last_outcome_at=tally.last_outcome_at,
        cells=cells,
        binary=binary,
        classification=classification,
        regression=regression,
        windows=windows,
        confidence=_confidence_quality(tally, task_type),
    )


def quality_list(
    *, registered_model: RegisteredModel | None = None, version: str | None = None, with_windows: bool = True
) -> list[VersionQuality]:
    """Quality per model version from the counter tables: a handful of small queries, whatever the number of
    predictions stored."""
    tallies = VersionTally.objects.select_related("model_version__registered_model").order_by(
        "model_version__registered_model__name", "model_version__created_at", "model_version_id"
    )
    if registered_model is not None:
        tallies = tallies.filter(model_version__registered_model=registered_model)
    if version is not None:
        tallies = tallies.filter(model_version__version=version)
    tallies = list(tallies)
    version_ids = [tally.model_version_id for tally in tallies]
    cells: dict[int, dict[tuple[str, str], int]] = {version_id: {} for version_id in version_ids}
    for version_id, actual, predicted, count in ConfusionCell.objects.filter(
        model_version_id__in=version_ids, count__gt=0
    ).values_list("model_version_id", "actual_label", "predicted_label", "count"):
        cells[version_id][(actual, predicted)] = count
    last_hour = _last_hour_windows(version_ids) if with_windows else {}
    size = settings.FEEDBACKHUB_WINDOW_OUTCOMES
    result = []
    for tally in tallies:
        task_type = tally.model_version.registered_model.task_type
        windows = {}
        if with_windows and tally.outcomes:
            windows[f"last_{size}"] = _window(task_type, *_last_outcomes_window(tally.model_version_id, size))
            windows["last_1h"] = _window(task_type, *last_hour.get(tally.model_version_id, (0, 0, 0.0)))
        result.append(_quality(tally, cells[tally.model_version_id], windows))
    return result


def feedback_counts() -> list[tuple[str, str, int]]:
    """(model name, feedback kind, lifetime count) from the feedback tally."""
    rows = FeedbackTally.objects.select_related("registered_model").order_by("registered_model__name", "kind")
    return [(row.registered_model.name, row.kind, row.count) for row in rows]


# --- series over time for the dashboard, read from the hourly rollup tables only -----------------------------

Step = Literal["hour", "day"]


def _bucket(step: Step) -> Expression:
    """The rollup's hour, or its day: long periods are summed per day in SQL, so a page reads few rows.

    The day is the first ten characters of the hour as UTC text ("2026-11-30"): plain SQL on SQLite and
    PostgreSQL alike (Django's connections run in UTC), where TruncDay would call Python once per row on SQLite."""
    if step == "hour":
        return F("hour")
    return Substr(Cast("hour", output_field=CharField()), 1, 10)


def _moment(bucket: datetime | str) -> datetime:
    return bucket if isinstance(bucket, datetime) else datetime.fromisoformat(bucket).replace(tzinfo=UTC)


@dataclass(frozen=True)
class QualityPoint:
    at: datetime
    outcomes: int
    accuracy: float | None = None
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    mae: float | None = None
    rmse: float | None = None


def quality_series(*, registered_model: RegisteredModel, since: datetime, step: Step) -> dict[str, list[QualityPoint]]:
    """Per version name, the quality of the predictions made in each hour (or day) since `since` that have
    outcomes."""
    versions = dict(ModelVersion.objects.filter(registered_model=registered_model).values_list("pk", "version"))
    sums = (
        OutcomeHour.objects.filter(model_version_id__in=versions, hour__gte=since)
        .values("model_version_id", at=_bucket(step))
        .annotate(
            outcomes=Sum("outcomes"),
            correct=Sum("correct"),
            abs_error_sum=Sum("abs_error_sum"),
            squared_error_sum=Sum("squared_error_sum"),
        )
        .filter(outcomes__gt=0)
        .order_by("at")
        .values_list("model_version_id", "at", "outcomes", "correct", "abs_error_sum", "squared_error_sum")
    )
    cells: dict[tuple[int, datetime], dict[tuple[str, str], int]] = {}
    if registered_model.task_type in (TaskType.BINARY, TaskType.MULTICLASS):
        for version_id, at, actual, predicted, count in (
            ConfusionHour.objects.filter(model_version_id__in=versions, hour__gte=since)
            .values("model_version_id", "actual_label", "predicted_label", at=_bucket(step))
            .annotate(total=Sum("count"))
            .filter(total__gt=0)
            .values_list("model_version_id", "at", "actual_label", "predicted_label", "total")
        ):
            cells.setdefault((version_id, at), {})[(actual, predicted)] = count
    series: dict[str, list[QualityPoint]] = {}
    for version_id, at, *totals in sums:
        cells_then = cells.get((version_id, at), {})
        point = _quality_point(registered_model.task_type, _moment(at), *totals, cells=cells_then)
        series.setdefault(versions[version_id], []).append(point)
    return series


def _quality_point(
    task_type: str,
    at: datetime,
    outcomes: int,
    correct: int,
    abs_error_sum: float,
    squared_error_sum: float,
    *,
    cells: dict[tuple[str, str], int],
) -> QualityPoint:
    if task_type == TaskType.REGRESSION:
        quality = regression_quality(outcomes, abs_error_sum, squared_error_sum)
        return QualityPoint(at, outcomes, mae=quality.mae, rmse=quality.rmse)
    if task_type == TaskType.BINARY and cells:
        scores = binary_quality(BinaryCounts.from_cells(cells))
    elif task_type == TaskType.MULTICLASS and cells:
        scores = multiclass_quality(cells)
    else:
        return QualityPoint(at, outcomes, accuracy=correct / outcomes)
    return QualityPoint(at, outcomes, scores.accuracy, scores.precision, scores.recall, scores.f1)


def prediction_series(
    *, registered_model: RegisteredModel, since: datetime, step: Step
) -> dict[str, list[tuple[datetime, int]]]:
    """Per version name, (hour or day, predictions) since `since`."""
    rows = (
        PredictionHour.objects.filter(model_version__registered_model=registered_model, hour__gte=since)
        .values("model_version__version", at=_bucket(step))
        .annotate(total=Sum("predictions"))
        .order_by("at")
        .values_list("model_version__version", "at", "total")
    )
    series: dict[str, list[tuple[datetime, int]]] = {}
    for version, at, count in rows:
        series.setdefault(version, []).append((_moment(at), count))
    return series


@dataclass(frozen=True)
class LatencyPoint:
    at: datetime
    count: int
    p50: float
    p95: float
    p99: float


def histogram_quantile(quantile: float, counts: dict[int, int]) -> float:
    """The latency below which `quantile` of the counted predictions fall, interpolated linearly inside its
    bucket as Prometheus' histogram_quantile() does; in the open last bucket, the highest finite bound."""
    total = sum(counts.values())
    rank = quantile * total
    seen = 0
    for bucket in sorted(counts):
        if seen + counts[bucket] >= rank and counts[bucket]:
            if bucket >= len(LATENCY_BUCKETS_MS):
                return float(LATENCY_BUCKETS_MS[-1])
            lower = LATENCY_BUCKETS_MS[bucket - 1] if bucket else 0.0
            return lower + (LATENCY_BUCKETS_MS[bucket] - lower) * (rank - seen) / counts[bucket]
        seen += counts[bucket]
    return float(LATENCY_BUCKETS_MS[-1])


def latency_series(*, registered_model: RegisteredModel, since: datetime, step: Step) -> list[LatencyPoint]:
    """p50, p95 and p99 of the model's prediction latency (all versions) in each hour or day since `since`."""
    buckets: dict[datetime, dict[int, int]] = {}
    for at, bucket, count in (
        LatencyHour.objects.filter(model_version__registered_model=registered_model, hour__gte=since)
        .values("bucket", at=_bucket(step))
        .annotate(total=Sum("count"))
        .filter(total__gt=0)
        .values_list("at", "bucket", "total")
    ):
        buckets.setdefault(_moment(at), {})[bucket] = count
    return [
        LatencyPoint(at, sum(counts.values()), *(histogram_quantile(q, counts) for q in (0.5, 0.95, 0.99)))
        for at, counts in sorted(buckets.items())
    ]


@dataclass(frozen=True)
class FeedbackCount:
    at: datetime
    kind: str
    rating: int
    count: int


def feedback_series(*, registered_model: RegisteredModel, since: datetime, step: Step) -> list[FeedbackCount]:
    """Feedback per hour or day, kind and rating (0 for kinds without one) since `since`."""
    return [
        FeedbackCount(_moment(at), kind, rating, count)
        for at, kind, rating, count in FeedbackHour.objects.filter(registered_model=registered_model, hour__gte=since)
        .values("kind", "rating", at=_bucket(step))
        .annotate(total=Sum("count"))
        .filter(total__gt=0)
        .order_by("at")
        .values_list("at", "kind", "rating", "total")
    ]


def predictions_since_by_model(*, since: datetime) -> dict[int, int]:
    """Predictions per model id since `since` (to the hour), from the hourly rollup."""
    rows = (
        PredictionHour.objects.filter(hour__gte=since)
        .values("model_version__registered_model_id")
        .annotate(total=Sum("predictions"))
        .values_list("model_version__registered_model_id", "total")
    )
    return dict(rows)


def feedback_since_by_model(*, since: datetime) -> dict[int, list[tuple[str, int, int]]]:
    """(kind, rating, count) per model id since `since` (to the hour), from the hourly rollup."""
    counts: dict[int, list[tuple[str, int, int]]] = {}
    for model_id, kind, rating, total in (
        FeedbackHour.objects.filter(hour__gte=since, count__gt=0)
        .values("registered_model_id", "kind", "rating")
        .annotate(total=Sum("count"))
        .values_list("registered_model_id", "kind", "rating", "total")
    ):
        counts.setdefault(model_id, []).append((kind, rating, total))
    return counts


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    is_output: bool
    method: str
    value: float
    p_value: float | None
    threshold: float | None
    drifted: bool


def drift_reports(*, drift_check: DriftCheck) -> list[FeatureDrift]:
    return [
        FeatureDrift(r.feature, r.is_output, r.method, r.value, r.p_value, r.threshold, r.drifted)
        for r in drift_check.reports.all()
    ]


# Checks run every 15 minutes while a version's window has enough predictions; an older one describes traffic
# that has stopped (or a version that was replaced), and is not acted on or exported as current.
DRIFT_CHECK_FRESH_FOR = timedelta(hours=1)


def latest_drift_check(
    *, registered_model: RegisteredModel, version: str | None = None, fresh: bool = False
) -> DriftCheck | None:
    """The newest drift check of the model's `version`, or of whichever of its versions was checked last;
    with `fresh`, only one made within DRIFT_CHECK_FRESH_FOR."""
    if version is not None:
        reference = (
            DriftReference.objects.filter(
                model_version__registered_model=registered_model, model_version__version=version
            )
            .select_related("last_check")
            .first()
        )
        check = reference.last_check if reference is not None else None
    else:
        check = DriftCheck.objects.filter(model_version__registered_model=registered_model).order_by("-id").first()
    if check is not None and fresh and check.created_at < timezone.now() - DRIFT_CHECK_FRESH_FOR:
        return None
    return check


def latest_drift_checks(*, registered_model: RegisteredModel) -> dict[str, DriftCheck]:
    """Each checked version's latest drift check, by version name, with its reports: three queries in all."""
    references = (
        DriftReference.objects.filter(model_version__registered_model=registered_model, last_check__isnull=False)
        .select_related("model_version", "last_check")
        .prefetch_related("last_check__reports")
    )
    return {reference.model_version.version: reference.last_check for reference in references}


def current_drift_check(*, registered_model: RegisteredModel, version: str | None) -> DriftCheck | None:
    """The fresh drift check that speaks for the model now: `version`'s (the champion's), else, when that version
    has none, the newest of any of its versions (the one the clients are serving)."""
    check = None
    if version is not None:
        check = latest_drift_check(registered_model=registered_model, version=version, fresh=True)
    return check or latest_drift_check(registered_model=registered_model, fresh=True)


def drifted_features(*, drift_check: DriftCheck | None) -> list[FeatureDrift]:
    """The inputs and outputs that crossed a threshold in `drift_check` (none without one)."""
    if drift_check is None:
        return []
    return [report for report in drift_reports(drift_check=drift_check) if report.drifted]


def latest_drift_reports(*, fresh: bool = False) -> list[tuple[str, str, DriftCheck, list[DriftReport]]]:
    """(model, version, check, reports) of the latest check of every version (with `fresh`, of the versions
    checked within DRIFT_CHECK_FRESH_FOR: what /metrics exports)."""
    checked = Q(last_check__isnull=False)
    if fresh:
        checked &= Q(last_check__created_at__gte=timezone.now() - DRIFT_CHECK_FRESH_FOR)
    references = list(
        DriftReference.objects.filter(checked)
        .select_related("model_version__registered_model", "last_check")
        .order_by("model_version__registered_model__name", "model_version__created_at", "model_version_id")
    )
    reports: dict[int, list[DriftReport]] = {reference.last_check_id: [] for reference in references}
    for report in DriftReport.objects.filter(drift_check_id__in=list(reports)).order_by("pk"):
        reports[report.drift_check_id].append(report)
    return [
        (
            reference.model_version.registered_model.name,
            reference.model_version.version,
            reference.last_check,
            reports[reference.last_check_id],
        )
        for reference in references
    ]


def input_drift_scores(*, predictions: Sequence[tuple[int, int]]) -> dict[int, float]:
    """For (prediction id, version id) pairs: how far each input lies in the part of the data that drifted, in [0, 1].

    For every input feature that drifted in its version's latest check, the bin its value falls in is
    over-represented in the check's window by a lift of 1 - (reference share / window share) (0 where the bin is no
    more common than in the reference, near 1 where it was rare before); a prediction scores its largest lift.
    Predictions of versions whose latest check found no drifted input are left out (score 0)."""
    lifts = _drift_lifts({version_id for _, version_id in predictions})
    wanted = [prediction_id for prediction_id, version_id in predictions if version_id in lifts]
    if not wanted:
        return {}
    inputs = dict(Prediction.objects.filter(pk__in=wanted).values_list("pk", "input"))
    scores = {}
    for prediction_id, version_id in predictions:
        if prediction_id not in inputs or version_id not in lifts:
            continue
        binner, lift = lifts[version_id]
        features = input_features(inputs[prediction_id])
        bins = ((name, binner.bin(name, value)) for name, value in features.items() if name in lift)
        scores[prediction_id] = max((lift[name][index] for name, index in bins if index is not None), default=0.0)
    return scores


def _drift_lifts(version_ids: set[int]) -> dict[int, tuple[Binner, dict[str, list[float]]]]:
    """Per version with drifted inputs in its latest check: a binner of those inputs and each bin's lift."""
    lifts = {}
    references = DriftReference.objects.filter(
        model_version_id__in=version_ids,
        last_check__drifted=True,
        last_check__created_at__gte=timezone.now() - DRIFT_CHECK_FRESH_FOR,
    )
    for reference in references.select_related("last_check"):
        check = reference.last_check
        drifted = set(check.reports.filter(drifted=True, is_output=False).values_list("feature", flat=True))
        specs = {name: reference.inputs[name] for name in drifted if name in reference.inputs}
        if not specs:
            continue
        window: dict[str, list[int]] = {}
        for counts in DriftWindowHour.objects.filter(
            model_version_id=reference.model_version_id, hour__range=(check.window_start, check.window_end)
        ).values_list("inputs", flat=True):
            merged(window, {name: counts[name] for name in specs if name in counts})
        lifts[reference.model_version_id] = (
            Binner(specs),
            {name: _lift(spec["counts"], window.get(name)) for name, spec in specs.items()},
        )
    return lifts


def _lift(reference: Sequence[int], current: Sequence[int] | None) -> list[float]:
    if not current or not sum(current) or not sum(reference):
        return [0.0] * len(reference)
    reference_total, current_total = sum(reference), sum(current)
    return [
        max(0.0, 1 - (then / reference_total) / (now / current_total)) if now else 0.0
        for then, now in zip(reference, current, strict=False)
    ]
