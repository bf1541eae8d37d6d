"""Reads of the review app."""

from django.db.models import Max, OuterRef, Q, QuerySet, Subquery

from collector.models import Feedback, Prediction, RegisteredModel
from reviews.models import ACTIVE_STATUSES, Correction, CorrectionStatus, Instruction, KnowledgeEntry, ReviewTask


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
