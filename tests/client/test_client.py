"""The Python client against a real hub (pytest-django's live server), through a real HTTP proxy that can
answer 503 or lose answers, to play an outage without mocking anything."""

import dataclasses
import datetime
import http.server
import json
import logging
import math
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy
import pytest

from collector.models import Feedback, Prediction
from collector.services import api_key_create
from feedbackhub.client import FeedbackCollector

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]
FAST_RETRIES = {"backoff_base": 0.01, "backoff_max": 0.2}


class HubProxy:
    """Forwards POSTs to the hub and relays its answers; answers 503 (Retry-After: 0) while `down` is set or for
    the first `refuse_first` requests; forwards but answers 503 for the first `lose_first` (a lost answer)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.down = threading.Event()
        self.refuse_first = 0
        self.lose_first = 0
        self.batch_sizes: list[int] = []
        self.refused = 0
        self._lock = threading.Lock()
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="hub-proxy", daemon=True)
        self._thread.start()

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server looks for
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status, answer = proxy.answer(self.path, body, dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                if status == 503:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def answer(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        with self._lock:
            number = len(self.batch_sizes) + 1
            self.batch_sizes.append(len(json.loads(body)))
            refuse = self.down.is_set() or number <= self.refuse_first
            lose = number <= self.lose_first
            self.refused += refuse or lose
        unavailable = b'{"error": {"status": 503, "code": "unavailable", "message": "down for a test", "fields": []}}'
        if refuse:
            return 503, unavailable
        forward = {name: headers[name] for name in ("Authorization", "Content-Type") if name in headers}
        # The target is the live server's http:// URL.
        request = urllib.request.Request(self.target + path, data=body, headers=forward, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                status, answer = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, answer = error.code, error.read()
        return (503, unavailable) if lose else (status, answer)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def key() -> str:
    return api_key_create(name="client")[1]


@pytest.fixture
def proxy(live_server: Any) -> Iterator[HubProxy]:
    hub = HubProxy(live_server.url)
    yield hub
    hub.close()


@pytest.fixture
def make_client(key: str) -> Iterator[Callable[..., FeedbackCollector]]:
    """Clients for a test, all closed after it even when it fails."""
    made: list[FeedbackCollector] = []

    def make(url: str, **options: Any) -> FeedbackCollector:
        options.setdefault("api_key", key)
        client = FeedbackCollector(url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close(timeout=1)


@pytest.fixture
def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def stored_event_ids() -> list[str]:
    return list(Prediction.objects.values_list("event_id", flat=True))


def wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class ArrayLike:
    """What numpy arrays look like to the client: not JSON, but with .tolist()."""

    def __init__(self, values: list) -> None:
        self.values = values

    def tolist(self) -> list:
        return list(self.values)


def test_the_seed_usage_works_with_only_the_import_changed(live_server: Any, key: str, monkeypatch: Any) -> None:
    monkeypatch.setenv("FEEDBACKHUB_URL", live_server.url)
    monkeypatch.setenv("FEEDBACKHUB_API_KEY", key)
    monkeypatch.setenv("FEEDBACKHUB_MODEL", "seed-model")
    from feedbackhub.client import FeedbackCollector

    test_data = numpy.array([[0.5, 1.0, 2.1], [0.1, 0.2, 0.3]])
    true_labels = ArrayLike([1, 1])
    model_version = "v1.0"
    feedback_collector = FeedbackCollector()
    start_time = time.time()
    predictions = numpy.array([1, 0])
    end_time = time.time()
    feedback_collector.log_feedback(
        input_data=test_data,
        prediction=predictions,
        actual_value=true_labels,
        model_version=model_version,
        latency=end_time - start_time,
    )
    feedback_collector.close()

    row = Prediction.objects.get()
    assert (row.input, row.prediction, row.actual) == ([[0.5, 1.0, 2.1], [0.1, 0.2, 0.3]], [1, 0], [1, 1])
    assert (row.registered_model.name, row.model_version.version) == ("seed-model", "v1.0")
    assert row.latency_ms == pytest.approx((end_time - start_time) * 1000)
    assert feedback_collector.sent == 1


@dataclasses.dataclass
class Plan:
    name: str
    tier: int


def test_it_turns_values_json_cannot_hold_into_json(live_server: Any, make_client: Callable) -> None:
    client = make_client(live_server.url, model="converted")
    when = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)

    event_id = client.log_feedback(
        {"plan": Plan("basic", 2), "seen": when, "tags": {"new"}, "score": numpy.float32(0.5)},
        numpy.int64(3),
        None,
        "v2",
        0.25,
        0.75,
        region="eu",
        weights=numpy.array([1.0, math.nan]),
        odd=complex(1, 2),
    )
    assert client.flush(timeout=10)

    row = Prediction.objects.get(event_id=event_id)
    assert row.input == {"plan": {"name": "basic", "tier": 2}, "seen": when.isoformat(), "tags": ["new"], "score": 0.5}
    assert (row.prediction, row.confidence, row.latency_ms) == (3, 0.75, 250.0)
    assert row.attributes == {"region": "eu", "weights": [1.0, None], "odd": "(1+2j)"}


def test_it_sends_n_events_in_n_over_batch_size_requests(proxy: HubProxy, make_client: Callable) -> None:
    client = make_client(proxy.url, batch_size=50, flush_interval=60)

    for n in range(230):
        client.log_feedback({"n": n}, n % 2, model_version="v1")
    assert client.flush(timeout=10)

    assert proxy.batch_sizes == [50, 50, 50, 50, 30]
    assert Prediction.objects.count() == 230 == client.sent


def test_it_retries_through_a_hub_answering_503_and_stores_each_event_once(
    proxy: HubProxy, make_client: Callable
) -> None:
    proxy.refuse_first = 6
    client = make_client(proxy.url, batch_size=40, flush_interval=0.05, max_retries=2, **FAST_RETRIES)

    logged = [client.log_feedback({"n": n}, 1, model_version="v1") for n in range(120)]
    assert wait_until(lambda: client.sent == 120)

    assert sorted(stored_event_ids()) == sorted(logged)
    assert proxy.refused == 6
    assert (client.dropped, client.rejected) == (0, 0)


def test_a_batch_whose_answer_was_lost_is_not_stored_twice(proxy: HubProxy, make_client: Callable) -> None:
    proxy.lose_first = 2
    client = make_client(proxy.url, batch_size=25, flush_interval=60, **FAST_RETRIES)

    logged = [client.log_feedback({"n": n}, 1, model_version="v1") for n in range(25)]
    assert client.flush(timeout=10)

    assert sorted(stored_event_ids()) == sorted(logged)
    assert proxy.batch_sizes == [25, 25, 25]


def test_a_bad_item_is_refused_alone_and_the_rest_of_its_batch_stored(
    live_server: Any, make_client: Callable, caplog: Any
) -> None:
    client = make_client(live_server.url, batch_size=10, flush_interval=60)

    with caplog.at_level(logging.ERROR, logger="feedbackhub.client"):
        logged = [client.log_feedback({"n": n}, 1, None, "v1", 0.01, 0.5) for n in range(9)]
        bad = client.log_feedback({"n": 9}, 1, None, "v1", 0.01, confidence_score=1.5)
        assert client.flush(timeout=10)

    assert sorted(stored_event_ids()) == sorted(logged)
    assert (client.rejected, client.sent) == (1, 9)
    assert f"refused prediction {bad} (HTTP 400): confidence: Ensure this value is less than or equal to 1" in (
        caplog.text
    )


def test_a_reused_event_id_with_another_body_is_refused_alone(live_server: Any, make_client: Callable) -> None:
    client = make_client(live_server.url, batch_size=3, flush_interval=60)
    client.log_feedback({"n": 0}, 1, model_version="v1", event_id="taken")
    assert client.flush(timeout=10)

    client.log_feedback({"n": 1}, 1, model_version="v1", event_id="fresh-1")
    client.log_feedback({"changed": True}, 1, model_version="v1", event_id="taken")
    client.log_feedback({"n": 2}, 1, model_version="v1", event_id="fresh-2")
    assert client.flush(timeout=10)

    assert sorted(stored_event_ids()) == ["fresh-1", "fresh-2", "taken"]
    assert Prediction.objects.get(event_id="taken").input == {"n": 0}
    assert client.rejected == 1


def test_a_batch_over_the_hubs_body_limit_is_sent_in_halves(
    live_server: Any, make_client: Callable, settings: Any
) -> None:
    settings.FEEDBACKHUB_MAX_BODY_BYTES = 20_000
    client = make_client(live_server.url, batch_size=16, flush_interval=60)

    logged = [client.log_feedback("x" * 2_000, 1, model_version="v1") for _ in range(16)]
    assert client.flush(timeout=10)

    assert sorted(stored_event_ids()) == sorted(logged)
    assert client.rejected == 0


def test_a_wrong_api_key_is_logged_and_its_events_counted(live_server: Any, make_client: Callable, caplog: Any) -> None:
    client = make_client(live_server.url, api_key="fbh_not-a-key", flush_interval=60)

    with caplog.at_level(logging.ERROR, logger="feedbackhub.client"):
        client.log_feedback({"n": 1}, 1, model_version="v1")
        assert client.flush(timeout=10)

    assert Prediction.objects.count() == 0
    assert client.rejected == 1
    assert "refused the API key (HTTP 401: Invalid or revoked API key.)" in caplog.text


def test_the_spool_keeps_events_across_a_restart_and_sends_each_once(
    proxy: HubProxy, live_server: Any, make_client: Callable, tmp_path: Path
) -> None:
    spool = tmp_path / "spool.sqlite3"
    proxy.down.set()
    first = make_client(proxy.url, spool_path=spool, batch_size=10, max_retries=1, **FAST_RETRIES)
    logged = [first.log_feedback({"n": n}, 1, model_version="v1") for n in range(25)]
    first.close(timeout=2)

    with sqlite3.connect(spool) as connection:
        payloads = [json.loads(p) for (p,) in connection.execute("SELECT payload FROM spool ORDER BY id")]
    assert sorted(p["event_id"] for p in payloads) == sorted(logged)
    assert (first.spooled, first.dropped, Prediction.objects.count()) == (25, 0, 0)

    second = make_client(live_server.url, spool_path=spool, batch_size=10)
    assert wait_until(lambda: second.spooled == 0)

    assert sorted(stored_event_ids()) == sorted(logged)
    with sqlite3.connect(spool) as connection:
        assert connection.execute("SELECT COUNT(*) FROM spool").fetchone() == (0,)
    assert second.sent == 25


def test_a_full_queue_drops_the_oldest_and_counts_them(
    closed_port_url: str, make_client: Callable, caplog: Any
) -> None:
    client = make_client(closed_port_url, max_queue=10, flush_interval=3600, **FAST_RETRIES)

    with caplog.at_level(logging.WARNING, logger="feedbackhub.client"):
        for n in range(50):
            client.log_feedback({"n": n}, 1, model_version="v1")

    assert (client.dropped, client.queued) == (40, 10)
    warnings = [r.getMessage() for r in caplog.records if "queue is full" in r.getMessage()]
    assert len(warnings) == 1
    assert "dropped the oldest: 1 so far" in warnings[0]

    client.close(timeout=0.3)
    assert (client.dropped, client.queued, client.sent) == (50, 0, 0)


def test_outcomes_before_and_after_their_prediction_and_user_feedback_arrive(
    live_server: Any, make_client: Callable
) -> None:
    client = make_client(live_server.url, model="churn", flush_interval=60)
    client.log_feedback({"tenure": 1}, 1, model_version="v1")  # registers the model as binary
    assert client.flush(timeout=10)

    client.log_outcome("early", 0)
    assert client.flush(timeout=10)
    early = client.log_feedback({"tenure": 2}, 1, model_version="v1", event_id="early")
    late = client.log_feedback({"tenure": 3}, 0, model_version="v1", interaction_id="session-7")
    assert client.flush(timeout=10)
    client.log_outcome(late, 1)
    thumbs = client.log_user_feedback("thumbs_down", prediction_event_id=late, comment="wrong", source="widget")
    client.log_user_feedback("rating", interaction_id="session-7", value=4)
    assert client.flush(timeout=10)

    assert Prediction.objects.get(event_id=early).actual == 0
    assert Prediction.objects.get(event_id=late).actual == 1
    feedback = Feedback.objects.get(event_id=thumbs)
    assert (feedback.kind, feedback.comment, feedback.source, feedback.prediction.event_id) == (
        "thumbs_down",
        "wrong",
        "widget",
        late,
    )
    assert Feedback.objects.get(kind="rating").value == 4
    assert (client.sent, client.rejected) == (7, 0)


def test_an_outcome_logged_before_the_first_prediction_of_a_new_model_arrives(
    live_server: Any, make_client: Callable
) -> None:
    client = make_client(live_server.url, model="brand-new", flush_interval=60)

    client.log_outcome("first", 1)
    client.log_feedback({"n": 1}, 0, model_version="v1", event_id="first")
    assert client.flush(timeout=10)

    assert Prediction.objects.get(event_id="first").actual == 1
    assert (client.sent, client.rejected) == (2, 0)


def log_through_an_outage(client: FeedbackCollector, proxy: HubProxy, events: int, outage_seconds: float) -> list[str]:
    """Log `events` evenly over `outage_seconds` + 2 seconds, with the hub away from the first second on."""
    logged = []
    rate_per_second = events / (outage_seconds + 2)
    start = time.monotonic()
    for n in range(events):
        elapsed = time.monotonic() - start
        if 1 <= elapsed < 1 + outage_seconds:
            proxy.down.set()
        else:
            proxy.down.clear()
        logged.append(client.log_feedback({"n": n}, n % 2, model_version="v1"))
        ahead = (n + 1) / rate_per_second - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    proxy.down.clear()
    return logged


def test_events_logged_while_the_hub_is_stopped_arrive_once_through_the_spool(
    proxy: HubProxy, make_client: Callable, tmp_path: Path
) -> None:
    client = make_client(
        proxy.url, spool_path=tmp_path / "spool.sqlite3", flush_interval=0.2, max_retries=2, **FAST_RETRIES
    )

    logged = log_through_an_outage(client, proxy, events=2_000, outage_seconds=3)
    client.close(timeout=20)

    assert proxy.refused > 0
    assert (client.spooled, client.dropped, client.rejected) == (0, 0, 0)
    assert sorted(stored_event_ids()) == sorted(logged)


@pytest.mark.slow
def test_ten_thousand_events_around_a_ten_second_outage_arrive_once(
    proxy: HubProxy, make_client: Callable, tmp_path: Path
) -> None:
    client = make_client(proxy.url, spool_path=tmp_path / "spool.sqlite3", **FAST_RETRIES)

    logged = log_through_an_outage(client, proxy, events=10_000, outage_seconds=10)
    client.close(timeout=60)

    assert (client.spooled, client.dropped, client.rejected) == (0, 0, 0)
    assert sorted(stored_event_ids()) == sorted(logged)


def test_a_task_type_given_to_the_client_registers_a_new_model_with_it(live_server: Any, make_client: Callable) -> None:
    client = make_client(live_server.url, model="scores", task_type="regression")

    client.log_feedback({"n": 1}, 1.0, model_version="v1")  # alone, 1.0 would make the model binary
    client.log_feedback({"n": 2}, 0.37, model_version="v1")
    assert client.flush(timeout=10)

    assert sorted(Prediction.objects.values_list("prediction", flat=True)) == [0.37, 1.0]
    assert Prediction.objects.first().registered_model.task_type == "regression"


def test_events_logged_just_before_the_interpreter_exits_are_sent(live_server: Any, key: str) -> None:
    code = (
        "from feedbackhub.client import FeedbackCollector\n"
        "collector = FeedbackCollector(flush_interval=3600)\n"
        "for n in range(30):\n"
        "    collector.log_feedback({'n': n}, 1, model_version='v1', event_id=f'exit-{n}')\n"
    )
    env = {**os.environ, "FEEDBACKHUB_URL": live_server.url, "FEEDBACKHUB_API_KEY": key}

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, result.stderr
    assert sorted(stored_event_ids()) == sorted(f"exit-{n}" for n in range(30))


def test_importing_the_client_does_not_import_django() -> None:
    code = "import feedbackhub.client, sys; assert 'django' not in sys.modules, 'django was imported'"

    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)

    assert result.returncode == 0, result.stderr


def test_close_leaves_no_client_thread_running(live_server: Any, key: str) -> None:
    with FeedbackCollector(live_server.url, key, flush_interval=60) as client:
        client.log_feedback({"n": 1}, 1, model_version="v1")

    client.close()  # a second close is harmless
    assert [t.name for t in threading.enumerate() if t.name.startswith("feedbackhub-client")] == []
    assert Prediction.objects.count() == 1


def test_events_logged_after_close_are_counted_as_dropped(live_server: Any, make_client: Callable) -> None:
    client = make_client(live_server.url)
    client.close()

    client.log_feedback({"n": 1}, 1, model_version="v1")

    assert (client.dropped, client.sent) == (1, 0)


def test_a_positional_db_path_from_the_seed_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="db_path is now a keyword"):
        FeedbackCollector("feedback.db")
