from celery import shared_task
from django.conf import settings

from loop import services


@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    time_limit=settings.CELERY_TASK_TIME_LIMIT,
    soft_time_limit=settings.CELERY_TASK_SOFT_TIME_LIMIT,
)
def retrain(run_id: int) -> str:
    """Run one queued training run. Safe to deliver twice: only one worker can claim the run."""
    run = services.training_run_execute(run_id=run_id)
    return "not claimed" if run is None else run.status


@shared_task(ignore_result=True)
def retrain_due_models() -> list[int]:
    """Beat, every minute: queue a run for each model past its threshold of new labelled examples."""
    return [run.pk for run in services.retrain_due_models()]
