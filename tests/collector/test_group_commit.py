"""Single predictions sent together by several threads of a process are written in one transaction, and each thread
still gets its own answer: its row, "duplicate" for an event already in the group or stored, and the error it alone
caused (a conflicting event, a model its key may not write), which leaves the others' events stored."""

import threading
import time
from typing import Any

import pytest
from django.db import connections
from django.utils import timezone

from collector import services
from collector.group_commit import _PredictionGroups
from collector.models import ApiKey, Prediction, RegisteredModel, VersionTally
from collector.services import Actor, PredictionIn, Recorded, prediction_record
from feedbackhub.errors import Conflict, Forbidden

pytestmark = pytest.mark.django_db(transaction=True)
ANYONE = Actor(label="test")


def item(event_id: str, prediction: int = 1, model: str = "churn") -> PredictionIn:
    return PredictionIn(model=model, version="v1", input={"event": event_id}, prediction=prediction, event_id=event_id)


def send_together(sends: list[tuple[PredictionIn, Actor]]) -> list[Recorded | BaseException]:
    """Each (item, actor) sent by its own thread while the group's writer is busy, so that all of them queue and
    the first thread to write then writes them all; the answers in the order of `sends`."""
    groups = _PredictionGroups()
    answers: list[Any] = [None] * len(sends)

    def send(index: int) -> None:
        try:
            answers[index] = groups.record(*sends[index], parsed_storable=False)
        except BaseException as error:  # noqa: BLE001 - each thread's own answer, asserted on below
            answers[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(index,)) for index in range(len(sends))]
    with groups._writer:  # a write in progress: every thread queues behind it
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(groups._queue) < len(sends) and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(groups._queue) == len(sends)
    for thread in threads:
        thread.join()
    return answers


def test_predictions_queued_together_are_written_in_one_transaction() -> None:
    answers = send_together([(item(f"e{n}"), ANYONE) for n in range(6)])

    assert [answer.event_id for answer in answers] == [f"e{n}" for n in range(6)]
    assert all(answer.created for answer in answers)
    rows = Prediction.objects.order_by("event_id")
    assert [row.pk for row in rows] == sorted(answer.id for answer in answers)
    assert len({row.received_at for row in rows}) == 1  # one batch: one transaction's time
    assert VersionTally.objects.get().predictions == 6


def test_the_same_event_twice_in_a_group_is_stored_once() -> None:
    first, again = send_together([(item("twice"), ANYONE), (item("twice"), ANYONE)])

    assert first.id == again.id
    assert sorted([first.created, again.created]) == [False, True]
    assert Prediction.objects.count() == 1
    assert VersionTally.objects.get().predictions == 1


def test_a_conflicting_event_fails_alone_and_the_rest_of_its_group_is_stored() -> None:
    stored = prediction_record(item=item("taken", prediction=0), actor=ANYONE)

    conflicting, fresh, retry = send_together(
        [(item("taken", prediction=1), ANYONE), (item("fresh"), ANYONE), (item("taken", prediction=0), ANYONE)]
    )

    assert isinstance(conflicting, Conflict)
    assert fresh.created
    assert retry == Recorded(stored.id, "taken", created=False)
    assert sorted(Prediction.objects.values_list("event_id", flat=True)) == ["fresh", "taken"]
    assert VersionTally.objects.get().predictions == 2


def test_a_key_scoped_to_another_model_is_refused_without_refusing_the_others() -> None:
    other = RegisteredModel.objects.create(name="other", task_type="binary")
    scoped = Actor(label="scoped", allowed_model_ids=frozenset({other.pk}))
    RegisteredModel.objects.create(name="churn", task_type="binary")

    refused, allowed, unscoped = send_together(
        [(item("r1"), scoped), (item("a1", model="other"), scoped), (item("u1"), ANYONE)]
    )

    assert isinstance(refused, Forbidden)
    assert allowed.created and unscoped.created
    assert sorted(Prediction.objects.values_list("event_id", flat=True)) == ["a1", "u1"]


def test_a_prediction_sent_alone_is_written_at_once() -> None:
    answer = _PredictionGroups().record(item("alone"), ANYONE, parsed_storable=False)

    assert answer.created
    assert Prediction.objects.get().pk == answer.id


def test_a_group_whose_remembered_key_was_revoked_is_refused_at_once_with_nothing_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prediction_record(item=item("warm"), actor=ANYONE)
    api_key, _ = services.api_key_create(name="svc")
    remembered = Actor(label="key:svc", unconfirmed_key=(api_key.pk, api_key.key_sha256))
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
    checks: list[tuple[int, str]] = []
    check = services._key_confirmed
    monkeypatch.setattr(services, "_key_confirmed", lambda key: checks.append(key) or check(key))

    answers = send_together([(item(f"e{n}"), remembered) for n in range(3)])

    assert all(isinstance(answer, services.ApiKeyNotConfirmed) for answer in answers)
    assert list(Prediction.objects.values_list("event_id", flat=True)) == ["warm"]
    assert len(checks) <= 2  # the group's write (on PostgreSQL its pipeline, then its transaction), not each request's
