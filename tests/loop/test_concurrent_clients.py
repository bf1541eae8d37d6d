"""Sixteen HTTP clients at once against a live server: each sends 500 predictions in batches, retries some of its
own batches and some of another client's, and sends the outcomes of a third client's events, which race their
predictions. Every event is stored once, every outcome lands, and every counter adds up, on SQLite (one writer at
a time, the others wait) and on PostgreSQL."""

import json
import random
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest
from django.db.models import Sum

from collector.models import (
    ConfusionCell,
    OutcomeHour,
    PendingOutcome,
    Prediction,
    PredictionHour,
    VersionTally,
)
from collector.services import api_key_create

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
CLIENTS = 16
EVENTS = 500
BATCH = 25


def event(client: int, n: int) -> dict[str, Any]:
    return {
        "model": "crowd", "version": "v1", "event_id": f"c{client}-{n}", "input": {"n": n, "client": client},
        "prediction": (client + n) % 2, "confidence": 0.5 + (n % 50) / 100, "latency_ms": float(n % 40),
    }  # fmt: skip


def actual(client: int, n: int) -> int:
    return (client * n) % 2


def batches(client: int) -> list[list[dict[str, Any]]]:
    events = [event(client, n) for n in range(EVENTS)]
    return [events[start : start + BATCH] for start in range(0, EVENTS, BATCH)]


def post(url: str, key: str, body: object, answers: list[tuple[int, str]]) -> None:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310
            answers.append((response.status, ""))
    except urllib.error.HTTPError as error:
        answers.append((error.code, error.read().decode(errors="replace")))


def test_sixteen_clients_with_retries_and_racing_outcomes_leave_exact_counts(live_server) -> None:
    _, key = api_key_create(name="crowd")
    answers: list[tuple[int, str]] = []
    barrier = threading.Barrier(CLIENTS)

    def client(number: int) -> None:
        rng = random.Random(number)
        mine, neighbours = batches(number), batches((number + 1) % CLIENTS)
        racing = (number + 2) % CLIENTS  # whose outcomes this client sends
        barrier.wait()
        for index, batch in enumerate(mine):
            post(f"{live_server.url}/api/v1/predictions/", key, batch, answers)
            if rng.random() < 0.25:
                post(f"{live_server.url}/api/v1/predictions/", key, batch, answers)  # a retry of its own
            if rng.random() < 0.25:
                post(f"{live_server.url}/api/v1/predictions/", key, neighbours[index], answers)  # someone else's
            outcomes = [
                {"model": "crowd", "event_id": f"c{racing}-{n}", "actual": actual(racing, n)}
                for n in range(index * BATCH, (index + 1) * BATCH)
            ]
            post(f"{live_server.url}/api/v1/outcomes/", key, outcomes, answers)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    failures = [answer for answer in answers if answer[0] >= 300]
    assert failures == [], failures[:3]  # no 409, no 5xx, no "database is locked"
    total = CLIENTS * EVENTS
    assert Prediction.objects.count() == total
    assert PendingOutcome.objects.count() == 0  # every outcome that came first found its prediction
    assert Prediction.objects.filter(actual__isnull=True).count() == 0
    expected_right = sum(((c + n) % 2) == actual(c, n) for c in range(CLIENTS) for n in range(EVENTS))
    tally = VersionTally.objects.get()
    assert (tally.predictions, tally.outcomes, tally.correct) == (total, total, expected_right)
    assert Prediction.objects.filter(is_correct=True).count() == expected_right
    assert ConfusionCell.objects.aggregate(n=Sum("count"))["n"] == total
    assert PredictionHour.objects.aggregate(n=Sum("predictions"))["n"] == total
    hours = OutcomeHour.objects.aggregate(n=Sum("outcomes"), right=Sum("correct"))
    assert hours == {"n": total, "right": expected_right}


SINGLES = 60


def test_sixteen_clients_sending_single_predictions_with_retries_store_each_event_once(live_server) -> None:
    """One prediction a request, as services log them: the server's threads write the ones that arrive together in
    one transaction (collector.group_commit); retries of a client's own events and another client's events sent as
    well are answered "duplicate", so across all answers each event is created exactly once."""
    _, key = api_key_create(name="singles")
    answers: list[tuple[int, str]] = []
    barrier = threading.Barrier(CLIENTS)
    url = f"{live_server.url}/api/v1/predictions/"

    def client(number: int) -> None:
        rng = random.Random(number)
        neighbour = (number + 1) % CLIENTS
        barrier.wait()
        for n in range(SINGLES):
            post(url, key, event(number, n), answers)
            if rng.random() < 0.25:
                post(url, key, event(number, n), answers)
            if rng.random() < 0.25:
                post(url, key, event(neighbour, n), answers)

    threads = [threading.Thread(target=client, args=(number,)) for number in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    total = CLIENTS * SINGLES
    assert [answer for answer in answers if answer[0] not in (200, 201)] == []
    assert sum(status == 201 for status, _ in answers) == total
    assert Prediction.objects.count() == total
    assert VersionTally.objects.get().predictions == total
    assert PredictionHour.objects.aggregate(n=Sum("predictions"))["n"] == total
