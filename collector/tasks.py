from celery import shared_task

from collector.drift import drift_check_all, drift_policy_for, drift_references_build_due, drift_windows_update
from collector.retention import retention_purge_all
from reviews.services import review_task_open_for_drift


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=3600, soft_time_limit=3540)
def purge_expired_predictions() -> list[dict]:
    """Nightly (beat): apply every model's retention. Safe to run twice: a second run finds nothing old."""
    return [
        {"model": r.model, "predictions": r.predictions, "feedback": r.feedback, "pending_outcomes": r.pending_outcomes}
        for r in retention_purge_all()
    ]


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=600, soft_time_limit=540)
def check_drift() -> dict:
    """Beat: build due references, count new predictions into the drift windows, check the versions due, and open
    a review task for a version that drifted. Safe to run twice at once: each chunk is counted once."""
    references = drift_references_build_due()
    counted = drift_windows_update()
    checks = drift_check_all()
    opened = [
        task.pk
        for check in checks
        if check.drifted and drift_policy_for(check.model_version.registered_model).open_review_task
        if (task := review_task_open_for_drift(drift_check=check)) is not None
    ]
    return {
        "references": len(references),
        "predictions_counted": counted,
        "checks": len(checks),
        "drifted": sum(check.drifted for check in checks),
        "review_tasks_opened": opened,
    }
