"""Reads of the review app."""

from django.db.models import Count, Max, OuterRef, Q, QuerySet, Subquery

from collector.models import Feedback, Prediction, RegisteredModel
from reviews.models import (
    ACTIVE_STATUSES,
    Correction,
    CorrectionStatus,
    Instruction,
    KnowledgeEntry,
    ReviewPolicy,
    ReviewTask,
)


def knowledge_current(*, models: QuerySet[RegisteredModel], model_name: str | None = None) -> QuerySet[KnowledgeEntry]:
    """The newest version of each topic, for the given models."""
    entries = KnowledgeEntry.objects.filter(registered_model__in=models)
    if model_name:
        entries = entries.filter(registered_model__name=model_name)
    newest = (
        KnowledgeEntry.objects.filter(registered_model=OuterRef("registered_model"), topic=OuterRef("topic"))
        .values("registered_model", "topic")
        .annotate(newest=Max("version"))
        .values("newest")
    )
    return (
        entries.filter(version=Subquery(newest))
        .select_related("registered_model")
        .order_by("registered_model__name", "topic")
    )


def instruction_active(*, registered_model: RegisteredModel) -> Instruction | None:
    return Instruction.objects.filter(registered_model=registered_model, is_active=True).first()


def review_task_list(*, models: QuerySet[RegisteredModel]) -> QuerySet[ReviewTask]:
    return (
        ReviewTask.objects.filter(registered_model__in=models)
        .select_related("registered_model", "assignee")
        .prefetch_related("related_feedback")
    )


def _active_task_feedback() -> QuerySet[Feedback]:
    return Feedback.objects.filter(review_tasks__status__in=ACTIVE_STATUSES)


def feedback_needed_by_open_tasks(registered_model: RegisteredModel) -> QuerySet:
    """Retention protector: feedback that an open review task is about."""
    return _active_task_feedback().filter(registered_model=registered_model).values("pk")


def predictions_needed_by_open_tasks(registered_model: RegisteredModel) -> QuerySet:
    """Retention protector: predictions behind an open task's feedback or a correction not yet decided."""
    behind_feedback = _active_task_feedback().filter(registered_model=registered_model, prediction__isnull=False)
    undecided = Correction.objects.filter(
        registered_model=registered_model, status__in=[CorrectionStatus.PROPOSED, CorrectionStatus.APPROVED]
    )
    return Prediction.objects.filter(
        Q(pk__in=behind_feedback.values("prediction")) | Q(pk__in=undecided.values("prediction"))
    ).values("pk")


def review_policies(*, models: list[RegisteredModel]) -> dict[int, ReviewPolicy]:
    """Each model's review policy, or an unsaved default one (reading never creates rows)."""
    stored = {policy.registered_model_id: policy for policy in ReviewPolicy.objects.filter(registered_model__in=models)}
    return {model.pk: stored.get(model.pk) or ReviewPolicy(registered_model=model) for model in models}


def active_task_counts() -> dict[int, int]:
    """Open and in-progress review tasks per model id."""
    rows = (
        ReviewTask.objects.filter(status__in=ACTIVE_STATUSES)
        .values("registered_model_id")
        .annotate(count=Count("pk"))
        .values_list("registered_model_id", "count")
    )
    return dict(rows)


def active_tasks(*, registered_model: RegisteredModel, limit: int) -> list[ReviewTask]:
    """The model's open and in-progress review tasks, highest priority and oldest first."""
    return list(
        ReviewTask.objects.filter(registered_model=registered_model, status__in=ACTIVE_STATUSES)
        .select_related("assignee")
        .order_by("priority_rank", "created_at")[:limit]
    )
