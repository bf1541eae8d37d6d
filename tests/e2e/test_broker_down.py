"""With the Celery broker down, ingestion still succeeds (fast) and the retrain trigger it causes is kept: the run
stays queued, marked as not yet sent, and once the broker is back the beat's check sends it and a real worker
trains and promotes. The broker is a Redis server of this test's own, stopped and started again."""

import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.e2e.test_retrain_worker import (
    champion_of,
    post,
    register_with_stored_examples,
    runs_of,
    separable,
    wait_for,
)
from tests.e2e.test_stack import StartStack, free_port, manage

pytestmark = [pytest.mark.slow]

REQUEST_BOUND_SECONDS = 10  # generous: a behaviour bound (the publish gives up in about a second), not a benchmark


class RedisServer:
    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, self.log_path.read_text()
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server must be installed when CI=true")
        pytest.skip("redis-server is not installed")
    server = RedisServer(free_port(), tmp_path / "redis.log")
    server.start()
    yield server
    server.stop()


def stored_counts(var_dir: Path, name: str) -> tuple[int, int, int]:
    with sqlite3.connect(var_dir / "db.sqlite3") as database:
        return database.execute(
            "SELECT (SELECT COUNT(*) FROM collector_prediction WHERE registered_model_id = model.id),"
            " (SELECT COUNT(*) FROM collector_prediction WHERE registered_model_id = model.id"
            "  AND actual_recorded_at IS NOT NULL),"
            " (SELECT COUNT(*) FROM loop_labelledexample WHERE registered_model_id = model.id)"
            " FROM collector_registeredmodel model WHERE model.name = ?",
            (name,),
        ).fetchone()


def timed_post(url: str, key: str, body: object) -> int:
    started = time.monotonic()
    status, answer = post(url, key, body)
    took = time.monotonic() - started
    assert took < REQUEST_BOUND_SECONDS, f"{url} took {took:.1f} s with the broker down"
    return status


def test_ingestion_works_with_the_broker_down_and_the_trigger_is_delivered_when_it_is_back(
    start_stack: StartStack, var_dir: Path, own_redis: RedisServer
) -> None:
    name = "broker-down"
    register_with_stored_examples(var_dir, name, threshold=40, examples=[])
    key = manage(var_dir, "create_api_key", "broker-down").strip().splitlines()[-1]
    stack = start_stack(CELERY_BROKER_URL=own_redis.url, FEEDBACKHUB_RETRAIN_CHECK_SECONDS="1")
    stack.wait_for_log(r"celery@\S+ ready\.")

    own_redis.stop()
    base = stack.base_url
    predictions = [
        {"model": name, "version": "v1", "event_id": f"p{index}", "input": example["input"], "prediction": 1}
        for index, example in enumerate(separable(10, seed=8))
    ]
    outcomes = [{"model": name, "event_id": f"p{index}", "actual": index % 2} for index in range(10)]
    assert timed_post(f"{base}/api/v1/predictions/", key, predictions) == 201
    assert timed_post(f"{base}/api/v1/outcomes/", key, outcomes) == 200
    assert timed_post(f"{base}/api/v1/models/{name}/examples/", key, separable(40, seed=9)) == 201  # past 40
    assert timed_post(f"{base}/api/v1/models/{name}/examples/", key, separable(5, seed=10)) == 201  # absorbed

    assert stored_counts(var_dir, name) == (10, 10, 45)
    [run] = runs_of(var_dir, name)
    assert (run["status"], run["trigger"], run["dispatched_at"]) == ("queued", "threshold", None)
    assert "could not reach the Celery broker" in run["dispatch_error"]

    own_redis.start()  # the same port: the worker and the beat reconnect by themselves

    def finished() -> list[dict] | None:
        runs = runs_of(var_dir, name)
        return runs if runs and runs[0]["status"] in ("succeeded", "failed") else None

    runs = wait_for(stack, "the queued run to be sent, trained and promoted", finished, timeout=120)
    assert [(r["id"], r["status"], r["promoted"], r["dispatch_error"]) for r in runs] == [
        (run["id"], "succeeded", 1, "")
    ], runs
    assert runs[0]["dispatched_at"] is not None
    assert champion_of(var_dir, name) is not None
    assert stack.stop(signal.SIGINT) == 0
