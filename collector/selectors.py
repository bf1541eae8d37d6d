"""Reads: what the API and the admin list and look up."""

from django.db.models import QuerySet

from collector.models import ApiKey, Feedback, Prediction, RegisteredModel
from collector.services import Actor


def actor_for_api_key(api_key: ApiKey) -> Actor:
    if api_key.all_models:
        return Actor(label=f"key:{api_key.name}")
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
