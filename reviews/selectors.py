"""Reads of the review app."""

from django.db.models import Max, OuterRef, QuerySet, Subquery

from collector.models import RegisteredModel
from reviews.models import Instruction, KnowledgeEntry, ReviewTask


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
