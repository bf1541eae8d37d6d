"""Reads of the improvement loop."""

from django.db.models import Max, QuerySet

from collector.models import ModelVersion, Prediction, RegisteredModel
from loop.datasets import labelled_predictions
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
    return labelled_predictions(registered_model).filter(created_at__lte=run.started_at).values("pk")


def champions() -> dict[int, ModelVersion]:
    """The current champion of every model that has one, by model id (the newest promotion or rollback)."""
    newest = Promotion.objects.values("registered_model_id").annotate(newest=Max("pk")).values("newest")
    return {
        promotion.registered_model_id: promotion.model_version
        for promotion in Promotion.objects.filter(pk__in=newest).select_related("model_version")
    }


def last_runs() -> dict[int, TrainingRun]:
    """Each model's newest training run, by model id."""
    newest = TrainingRun.objects.values("registered_model_id").annotate(newest=Max("pk")).values("newest")
    return {run.registered_model_id: run for run in TrainingRun.objects.filter(pk__in=newest)}


def training_history(*, registered_model: RegisteredModel, limit: int) -> list[TrainingRun]:
    """The model's newest runs, with the version each one trained."""
    return list(
        TrainingRun.objects.filter(registered_model=registered_model)
        .select_related("candidate_version")
        .order_by("-created_at", "-pk")[:limit]
    )


def champion_changes(*, registered_model: RegisteredModel, limit: int) -> list[Promotion]:
    return list(
        Promotion.objects.filter(registered_model=registered_model).select_related("model_version", "previous_version")[
            :limit
        ]
    )
