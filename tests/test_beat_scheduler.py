"""The beat's scheduler rides out a database error while it reads its schedule at start-up."""

from dataclasses import dataclass

import pytest
from django.db.utils import OperationalError
from django_celery_beat import schedulers

from feedbackhub import beat
from feedbackhub.celery import app

# Not inside a test transaction: the scheduler closes the connection between tries, as in the beat process.
pytestmark = pytest.mark.django_db(transaction=True)


@dataclass
class FlakyDatabase:
    failures_left: int = 0
    reads: int = 0


@pytest.fixture
def database(monkeypatch: pytest.MonkeyPatch) -> FlakyDatabase:
    """django-celery-beat's schedule read fails `failures_left` times, then works; `reads` counts the reads."""
    state = FlakyDatabase()
    read = schedulers.DatabaseScheduler.enabled_models

    def flaky(self: schedulers.DatabaseScheduler) -> list:
        state.reads += 1
        if state.failures_left:
            state.failures_left -= 1
            raise OperationalError("locking protocol")
        return read(self)

    monkeypatch.setattr(schedulers.DatabaseScheduler, "enabled_models", flaky)
    monkeypatch.setattr(beat, "STARTUP_RETRY_DELAYS", (0.01, 0.01))
    return state


def test_a_failed_first_read_is_tried_again_and_the_schedule_is_complete(database: FlakyDatabase) -> None:
    database.failures_left = 1

    scheduler = beat.DatabaseScheduler(app=app)

    assert database.reads >= 2
    assert set(app.conf.beat_schedule) <= set(scheduler.schedule)


def test_a_database_that_stays_down_still_ends_the_beat(database: FlakyDatabase) -> None:
    database.failures_left = 10

    with pytest.raises(OperationalError):
        beat.DatabaseScheduler(app=app)

    assert database.reads == 3  # a read for each of the two delays, then the last one
