from celery import shared_task

from collector.retention import retention_purge_all


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=3600, soft_time_limit=3540)
def purge_expired_predictions() -> list[dict]:
    """Nightly (beat): apply every model's retention. Safe to run twice: a second run finds nothing old."""
    return [
        {"model": r.model, "predictions": r.predictions, "feedback": r.feedback, "pending_outcomes": r.pending_outcomes}
        for r in retention_purge_all()
    ]
