"""Reads of the improvement loop."""

from django.db.models import Q, QuerySet

from collector.models import Prediction, RegisteredModel
from loop.models import Promotion, TrainingRun


def champion_training_run(registered_model: RegisteredModel) -> TrainingRun | None:
    latest = Promotion.objects.filter(registered_model=registered_model).first()
    if latest is None:
        return None
    return TrainingRun.objects.filter(candidate_version=latest.model_version).first()


def predictions_in_champion_training_set(registered_model: RegisteredModel) -> QuerySet:
    """Retention protector: the labelled predictions the current champion was trained from."""
    run = champion_training_run(registered_model)
    if run is None or run.started_at is None:
        return Prediction.objects.none().values("pk")
    labelled = Q(actual__isnull=False) | Q(training_label__isnull=False)
    return (
        Prediction.objects.filter(registered_model=registered_model, created_at__lte=run.started_at)
        .filter(labelled)
        .values("pk")
    )
