"""Concurrent writers on SQLite (one writer at a time, others wait) and PostgreSQL (row and advisory locks):
racing retries never make two rows, and counters never lose or double an increment."""

import threading

import pytest
from django.db import connections

from collector.models import ConfusionCell, PendingOutcome, Prediction, VersionTally
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


def test_many_threads_posting_outcomes_leave_exact_counts() -> None:
    items = [PredictionIn(model="race", version="v1", input=n, prediction=n % 2, event_id=f"e{n}") for n in range(200)]
    prediction_record_batch(items=items, actor=ACTOR)

    def work(thread: int) -> None:
        for n in range(thread, 200, 8):
            outcome = OutcomeIn(actual=1, model="race", event_id=f"e{n}")
            outcome_record_batch(items=[outcome], actor=ACTOR)
            outcome_record_batch(items=[outcome], actor=ACTOR)  # a retry: counted once
            if n % 5 == 0:
                outcome_record_batch(items=[OutcomeIn(actual=0, model="race", event_id=f"e{n}")], actor=ACTOR)

    errors = run_in_threads(work, 8)

    assert errors == []
    tally = VersionTally.objects.get()
    expected_cells = {
        (actual, predicted): Prediction.objects.filter(actual_label=actual, predicted_label=predicted).count()
        for actual in "01"
        for predicted in "01"
    }
    cells = {(c.actual_label, c.predicted_label): c.count for c in ConfusionCell.objects.all()}
    assert (tally.predictions, tally.outcomes) == (200, 200)
    assert tally.correct == Prediction.objects.filter(is_correct=True).count()
    assert {key: count for key, count in cells.items() if count} == {k: v for k, v in expected_cells.items() if v}


def test_ten_simultaneous_retrain_triggers_make_one_run() -> None:
    from collector.models import RegisteredModel
    from loop.models import TrainingRun
    from loop.services import retrain_request

    model = RegisteredModel.objects.create(name="loop", task_type="binary")
    created: list[bool] = []

    errors = run_in_threads(lambda _: created.append(retrain_request(registered_model=model, trigger="t")[1]), 10)

    assert errors == []
    assert sorted(created) == [False] * 9 + [True]
    assert TrainingRun.objects.count() == 1
