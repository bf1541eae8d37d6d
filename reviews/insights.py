"""What a period's feedback says about a model (or all models): how positive it is, the recurring complaints
(clusters of the negative feedback), where it goes wrong most (interactions, inputs), and the corrections
waiting for a reviewer. Read only: a model without a review policy is judged by the default policy, unsaved."""

import json
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from functools import reduce
from typing import Any

import numpy as np
from django.db.models import Aggregate, Count, F, FloatField, Max, Q, QuerySet
from django.db.models.functions import Cast
from django.utils import timezone
from scipy.sparse import csr_matrix
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import silhouette_score
from sklearn.metrics.pairwise import cosine_distances
from threadpoolctl import threadpool_limits

from collector.models import Feedback, FeedbackKind, Prediction, RegisteredModel
from reviews.models import Correction, CorrectionStatus, ReviewPolicy
from reviews.similarity import text_for

CLUSTERED_NEGATIVES_MAX = 2_000
CLUSTERS_MAX = 8
SAMPLE_COMMENTS_MAX = 3
ISSUE_FEEDBACK_IDS_MAX = 20
WEAK_SPOT_MIN_FEEDBACK = 3
WEAK_SPOTS_MAX = 10
PENDING_CORRECTIONS_MAX = 10
USER_CORRECTIONS_MAX = 50
POSITIVE_RATING_MIN = 4
NO_TEXT_ISSUE = "(no text)"
POLAR_KINDS = frozenset(
    {FeedbackKind.THUMBS_UP, FeedbackKind.THUMBS_DOWN, FeedbackKind.CORRECTION, FeedbackKind.RATING}
)


@dataclass(frozen=True)
class Period:
    days: int
    since: datetime
    until: datetime


@dataclass(frozen=True)
class Issue:
    issue: str
    frequency: int
    sample_comments: list[str]
    feedback_ids: list[int]


@dataclass(frozen=True)
class WeakSpot:
    """An interaction or an input whose feedback is often negative."""

    key: str
    model: str
    count: int
    negative_count: int
    negative_rate: float


@dataclass(frozen=True)
class PendingCorrection:
    id: int
    kind: str
    model: str
    created_at: datetime


@dataclass(frozen=True)
class PendingCorrections:
    count: int
    oldest: list[PendingCorrection]


@dataclass(frozen=True)
class Opportunities:
    interactions: list[WeakSpot]
    inputs: list[WeakSpot]
    pending_corrections: PendingCorrections


@dataclass(frozen=True)
class UserCorrection:
    id: int
    prediction_id: int | None
    interaction_id: str
    value: Any
    comment: str
    created_at: datetime


@dataclass(frozen=True)
class Insights:
    model: str | None
    period: Period
    total_feedback: int
    positive_rate: float
    negative_rate: float
    common_issues: list[Issue]
    improvement_opportunities: Opportunities
    user_corrections: list[UserCorrection]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _KindCount:
    """How many feedback items of one model share a kind (and, for ratings, a value)."""

    registered_model_id: int
    kind: str
    value: Any
    count: int


def insights_for(*, registered_model: RegisteredModel | None, days: int = 30, now: datetime | None = None) -> Insights:
    """Insights over the feedback created in the last `days` before `now`; `registered_model=None`: all models."""
    if days < 1:
        raise ValueError("days must be at least 1")
    until = now or timezone.now()
    period = Period(days=days, since=until - timedelta(days=days), until=until)
    feedback = Feedback.objects.filter(created_at__gte=period.since, created_at__lte=period.until)
    if registered_model is not None:
        feedback = feedback.filter(registered_model=registered_model)

    counts = _kind_counts(feedback)
    policies = _policies_by_model({count.registered_model_id for count in counts})
    negative_counts = [count for count in counts if _is_negative(count, policies)]
    # A kind the policy counts as negative (say, comments) has a polarity too, so both rates stay within 0-1.
    polar_counts = [count for count in counts if count.kind in POLAR_KINDS or count in negative_counts]
    negative = _matching_any(negative_counts)
    return Insights(
        model=registered_model.name if registered_model is not None else None,
        period=period,
        total_feedback=sum(count.count for count in counts),
        positive_rate=_share(part=[count for count in polar_counts if _is_positive(count)], whole=polar_counts),
        negative_rate=_share(part=negative_counts, whole=polar_counts),
        common_issues=_common_issues(_recent_negatives(feedback, negative)),
        improvement_opportunities=Opportunities(
            interactions=_worst_interactions(feedback, negative),
            inputs=_worst_inputs(feedback, negative),
            pending_corrections=_pending_corrections(registered_model),
        ),
        user_corrections=_user_corrections(feedback),
    )


# --- polarity ---------------------------------------------------------------------------------------


def _kind_counts(feedback: QuerySet[Feedback]) -> list[_KindCount]:
    # Grouped in the database so the rates cost the same at any volume; ratings keep their value apart
    # because the policy judges a rating by it.
    ratings = (
        feedback.filter(kind=FeedbackKind.RATING)
        .values("registered_model_id", "value")
        .annotate(items=Count("pk"))
        .order_by()
    )
    others = (
        feedback.exclude(kind=FeedbackKind.RATING)
        .values("registered_model_id", "kind")
        .annotate(items=Count("pk"))
        .order_by()
    )
    return [
        *(_KindCount(row["registered_model_id"], FeedbackKind.RATING, row["value"], row["items"]) for row in ratings),
        *(_KindCount(row["registered_model_id"], row["kind"], None, row["items"]) for row in others),
    ]


def _policies_by_model(model_ids: set[int]) -> dict[int, ReviewPolicy]:
    saved = {
        policy.registered_model_id: policy for policy in ReviewPolicy.objects.filter(registered_model_id__in=model_ids)
    }
    return {model_id: saved.get(model_id) or ReviewPolicy() for model_id in model_ids}


def _is_negative(count: _KindCount, policies: dict[int, ReviewPolicy]) -> bool:
    return policies[count.registered_model_id].counts_as_negative(Feedback(kind=count.kind, value=count.value))


def _is_positive(count: _KindCount) -> bool:
    if count.kind == FeedbackKind.RATING:
        return isinstance(count.value, int) and count.value >= POSITIVE_RATING_MIN
    return count.kind == FeedbackKind.THUMBS_UP


def _share(*, part: Sequence[_KindCount], whole: Sequence[_KindCount]) -> float:
    total = sum(count.count for count in whole)
    if total == 0:
        return 0.0
    return sum(count.count for count in part) / total


def _matching_any(counts: Sequence[_KindCount]) -> Q | None:
    """A filter for the feedback rows the given counts were made of; None when there are none."""
    conditions = [
        Q(registered_model_id=count.registered_model_id, kind=count.kind)
        & (Q(value=count.value) if count.kind == FeedbackKind.RATING else Q())
        for count in counts
    ]
    return reduce(operator.or_, conditions) if conditions else None


# --- common issues ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Negative:
    """What the clustering reads of a negative feedback item: model instances would cost more than the clustering."""

    pk: int
    comment: str
    text: str


def _recent_negatives(feedback: QuerySet[Feedback], negative: Q | None) -> list[_Negative]:
    if negative is None:
        return []
    recent = feedback.filter(negative).order_by("-created_at", "-pk").values_list("pk", "comment", "prediction__input")
    return [_Negative(pk, comment, text_for(comment, given)) for pk, comment, given in recent[:CLUSTERED_NEGATIVES_MAX]]


def _common_issues(negatives: Sequence[_Negative]) -> list[Issue]:
    if not negatives:
        return []
    texts = [item.text for item in negatives]
    try:
        # Without stop words "my", "the" and "is" would decide the clusters of short comments.
        matrix = TfidfVectorizer(sublinear_tf=True, stop_words="english").fit_transform(texts)
    except ValueError:  # not one word among all the texts
        return [_no_text_issue(negatives)]
    has_words = matrix.getnnz(axis=1) > 0
    worded = np.flatnonzero(has_words)
    wordless = [negatives[i] for i in np.flatnonzero(~has_words)]
    worded_matrix = matrix[worded]
    labels = _cluster_labels(worded_matrix)
    issues = [
        _issue(
            members=[negatives[i] for i in worded[labels == label]],
            texts=[texts[i] for i in worded[labels == label]],
            rows=worded_matrix[labels == label],
        )
        for label in np.unique(labels)
    ]
    if wordless:
        issues.append(_no_text_issue(wordless))
    return sorted(issues, key=lambda issue: -issue.frequency)


def _cluster_labels(matrix: csr_matrix) -> np.ndarray:
    """KMeans labels for the number of clusters with the best cosine silhouette; one cluster when too few."""
    size = matrix.shape[0]
    # More clusters than distinct rows would leave some empty, and silhouette needs 2..n-1 clusters.
    clusters_max = min(CLUSTERS_MAX, size - 1, _distinct_row_count(matrix))
    best_labels, best_score = np.zeros(size, dtype=int), -np.inf
    if clusters_max < 2:
        return best_labels
    # One thread: a request should not take every core, and for matrices this small the threads' start-up and
    # contention cost more than they save (ten times the wall time on a busy two-core host).
    with threadpool_limits(limits=1):
        distances = cosine_distances(matrix)  # once, not once per candidate number of clusters
        for clusters in range(2, clusters_max + 1):
            labels = KMeans(n_clusters=clusters, n_init=10, random_state=0).fit_predict(matrix)
            if np.unique(labels).size < 2:
                continue
            score = silhouette_score(distances, labels, metric="precomputed")
            if score > best_score:
                best_labels, best_score = labels, score
    return best_labels


def _distinct_row_count(matrix: csr_matrix) -> int:
    matrix = matrix.tocsr()
    matrix.sort_indices()
    bounds = zip(matrix.indptr[:-1], matrix.indptr[1:], strict=True)
    return len({(matrix.indices[start:end].tobytes(), matrix.data[start:end].tobytes()) for start, end in bounds})


def _issue(*, members: Sequence[_Negative], texts: Sequence[str], rows: csr_matrix) -> Issue:
    centroid = np.asarray(rows.mean(axis=0)).ravel()
    # Rows are L2-normalised, so the largest dot product with the centroid is the smallest distance to it.
    typical_first = np.argsort(-(rows @ centroid), kind="stable")
    ranked = [members[i] for i in typical_first]
    return Issue(
        issue=texts[typical_first[0]],
        frequency=len(members),
        sample_comments=_sample_comments(ranked),
        feedback_ids=[item.pk for item in ranked[:ISSUE_FEEDBACK_IDS_MAX]],
    )


def _no_text_issue(members: Sequence[_Negative]) -> Issue:
    return Issue(
        issue=NO_TEXT_ISSUE,
        frequency=len(members),
        sample_comments=_sample_comments(members),
        feedback_ids=[item.pk for item in members[:ISSUE_FEEDBACK_IDS_MAX]],
    )


def _sample_comments(items: Sequence[_Negative]) -> list[str]:
    return [item.comment for item in items if item.comment.strip()][:SAMPLE_COMMENTS_MAX]


# --- improvement opportunities -----------------------------------------------------------------------


def _worst_interactions(feedback: QuerySet[Feedback], negative: Q | None) -> list[WeakSpot]:
    rows = _worst_groups(feedback.exclude(interaction_id=""), negative, group_by="interaction_id")
    return [_weak_spot(row, key=row["interaction_id"]) for row in rows]


def _worst_inputs(feedback: QuerySet[Feedback], negative: Q | None) -> list[WeakSpot]:
    # Grouped by the input's hash stored on the feedback: a join to the predictions table for every feedback item
    # of the period would cost more than the rest of the page together. One prediction per group shows its input.
    rows = _worst_groups(
        feedback.filter(prediction__isnull=False).exclude(input_sha256=""),
        negative,
        group_by="input_sha256",
        sample=Max("prediction_id"),
    )
    inputs = dict(Prediction.objects.filter(pk__in=[row["sample"] for row in rows]).values_list("pk", "input"))
    return [
        _weak_spot(row, key=json.dumps(inputs.get(row["sample"]), sort_keys=True, ensure_ascii=False)) for row in rows
    ]


def _worst_groups(
    feedback: QuerySet[Feedback], negative: Q | None, *, group_by: str, **extra: Aggregate
) -> list[dict[str, Any]]:
    if negative is None:  # nothing negative, so no group is worth improving
        return []
    groups = (
        feedback.values("registered_model__name", group_by)
        .annotate(items=Count("pk"), negatives=Count("pk", filter=negative), **extra)
        .filter(items__gte=WEAK_SPOT_MIN_FEEDBACK, negatives__gt=0)
        .annotate(rate=Cast(F("negatives"), FloatField()) / Cast(F("items"), FloatField()))
        .order_by("-rate", "-items", "registered_model__name", group_by)
    )
    return list(groups[:WEAK_SPOTS_MAX])


def _weak_spot(row: dict[str, Any], *, key: str) -> WeakSpot:
    return WeakSpot(
        key=key,
        model=row["registered_model__name"],
        count=row["items"],
        negative_count=row["negatives"],
        negative_rate=row["negatives"] / row["items"],
    )


def _pending_corrections(registered_model: RegisteredModel | None) -> PendingCorrections:
    # Not limited to the period: a correction waits for a reviewer however old it is.
    pending = Correction.objects.filter(status=CorrectionStatus.PROPOSED)
    if registered_model is not None:
        pending = pending.filter(registered_model=registered_model)
    oldest = pending.select_related("registered_model").order_by("created_at", "pk")[:PENDING_CORRECTIONS_MAX]
    return PendingCorrections(
        count=pending.count(),
        oldest=[
            PendingCorrection(id=item.pk, kind=item.kind, model=item.registered_model.name, created_at=item.created_at)
            for item in oldest
        ],
    )


# --- user corrections --------------------------------------------------------------------------------


def _user_corrections(feedback: QuerySet[Feedback]) -> list[UserCorrection]:
    newest = feedback.filter(kind=FeedbackKind.CORRECTION).order_by("-created_at", "-pk")
    return [
        UserCorrection(
            id=item.pk,
            prediction_id=item.prediction_id,
            interaction_id=item.interaction_id,
            value=item.value,
            comment=item.comment,
            created_at=item.created_at,
        )
        for item in newest.only("pk", "prediction_id", "interaction_id", "value", "comment", "created_at")[
            :USER_CORRECTIONS_MAX
        ]
    ]
