"""A run whose task the broker did not take stays queued, is not given up as "never picked up", and the retrain
check sends it again (here through the embedded filesystem broker; tests/e2e/test_broker_down.py stops a real
Redis)."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from collector.models import RegisteredModel
from loop import services
from loop.models import RunStatus, TrainingRun

pytestmark = pytest.mark.django_db

BROKER_DOWN = "could not reach the Celery broker (Connection refused); the next retrain check sends it again"


def old_queued_run(name: str, **fields: object) -> TrainingRun:
    model = RegisteredModel.objects.create(name=name, task_type="binary")
    run = TrainingRun.objects.create(registered_model=model, trigger="threshold", **fields)
    long_ago = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120)
    TrainingRun.objects.filter(pk=run.pk).update(created_at=long_ago)
    return run


def test_a_run_the_broker_did_not_take_is_not_given_up_as_never_picked_up() -> None:
    undelivered = old_queued_run("undelivered", dispatch_error=BROKER_DOWN)
    sent_long_ago = old_queued_run("sent", dispatched_at=timezone.now() - timedelta(days=1))

    services.training_runs_fail_stale()

    undelivered.refresh_from_db()
    sent_long_ago.refresh_from_db()
    assert undelivered.status == RunStatus.QUEUED
    assert (sent_long_ago.status, sent_long_ago.error) == (
        RunStatus.FAILED, "no worker picked the run up (is a Celery worker running?)"
    )  # fmt: skip


def test_the_retrain_check_sends_an_undelivered_run_again() -> None:
    run = old_queued_run("undelivered", dispatch_error=BROKER_DOWN)

    assert services.training_runs_dispatch_undelivered() == 1

    run.refresh_from_db()
    assert (run.status, run.dispatch_error) == (RunStatus.QUEUED, "")
    assert run.dispatched_at is not None
    assert services.training_runs_dispatch_undelivered() == 0
