"""Concurrent writers on PostgreSQL: racing retries of one event never make two rows."""

import threading

import pytest
from django.db import connection, connections

from collector.models import PendingOutcome, Prediction
from collector.services import Actor, OutcomeIn, PredictionIn, outcome_record_batch, prediction_record_batch

pytestmark = pytest.mark.django_db(transaction=True)
ACTOR = Actor(label="test")


def run_in_threads(work, count: int) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def runner(n: int) -> None:
        try:
            barrier.wait()
            work(n)
        except BaseException as error:  # noqa: BLE001 - collected and asserted on below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


@pytest.fixture(autouse=True)
def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has a single writer; the race exists on PostgreSQL")


def test_racing_retries_of_one_batch_store_each_event_once() -> None:
    batch = [
        PredictionIn(model="race", version="v1", input={"n": n}, prediction=1, event_id=f"e{n}") for n in range(50)
    ]

    errors = run_in_threads(lambda _: prediction_record_batch(items=batch, actor=ACTOR), 8)

    assert errors == []
    assert Prediction.objects.count() == 50


def test_an_outcome_racing_its_prediction_is_never_lost() -> None:
    prediction_record_batch(items=[PredictionIn(model="race", version="v1", input=0, prediction=1)], actor=ACTOR)

    def work(n: int) -> None:
        if n % 2:
            outcome_record_batch(items=[OutcomeIn(actual=1, model="race", event_id=f"e{n // 2}")], actor=ACTOR)
        else:
            item = PredictionIn(model="race", version="v1", input=n, prediction=0, event_id=f"e{n // 2}")
            prediction_record_batch(items=[item], actor=ACTOR)

    errors = run_in_threads(work, 8)

    assert errors == []
    assert PendingOutcome.objects.count() == 0
    assert Prediction.objects.filter(event_id__startswith="e", actual=1).count() == 4
