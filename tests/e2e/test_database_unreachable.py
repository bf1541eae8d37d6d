"""With the database unreachable the API answers 503 with Retry-After in the one error shape, for reads and writes,
and writes nothing; /metrics still answers (process metrics, feedbackhub_database_up 0); when the database is
back the same gunicorn process serves again. SQLite: a database file that cannot be opened. PostgreSQL: a TCP
proxy in front of the server, cut mid-way (this one runs in the PostgreSQL pass of the suite)."""

import json
import shutil
import signal
import sqlite3
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from collector.models import Prediction
from collector.services import api_key_create
from tests.e2e.gunicorn_proxy import TcpProxy, gunicorn_start
from tests.e2e.test_stack import RunningStack, http_get, manage, scraped_value

pytestmark = [pytest.mark.slow]


def call(server: RunningStack, method: str, path: str, key: str, body: object = None) -> tuple[int, dict, object]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{server.base_url}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read() or b"null")


def batch(prefix: str) -> list[dict]:
    return [
        {"model": "churn", "version": "v1", "event_id": f"{prefix}-{index}", "input": [index], "prediction": index % 2}
        for index in range(5)
    ]


def assert_unavailable(server: RunningStack, key: str) -> None:
    """Writes and reads answer 503 with Retry-After and the one error shape; /metrics answers without models."""
    for method, path, body in (
        ("POST", "/api/v1/predictions/", batch("during")),
        ("POST", "/api/v1/predictions/", batch("single")[0]),  # answered before DRF (loop.api.single_events)
        ("POST", "/log-feedback", {"input_data": [1], "prediction": 1, "model_version": "v1", "latency": 0.1}),
        ("GET", "/api/v1/predictions/", None),
        ("GET", "/api/v1/models/churn/metrics/", None),
    ):
        status, headers, answer = call(server, method, path, key, body)
        assert status == 503, (method, path, status, answer, server.log()[-3000:])
        assert int(headers["Retry-After"]) > 0
        assert answer["error"]["status"] == 503
        assert answer["error"]["code"] == "unavailable"
    status, _, metrics = http_get(f"{server.base_url}/metrics")
    assert status == 200
    assert scraped_value(metrics, "feedbackhub_database_up") == 0
    assert "model_predictions_total" not in metrics


def assert_serves_again(server: RunningStack, key: str) -> None:
    status, _, answer = call(server, "POST", "/api/v1/predictions/", key, batch("during"))
    assert (status, answer["created"]) == (201, 5)  # the batch refused during the outage left nothing behind
    status, _, metrics = http_get(f"{server.base_url}/metrics")
    assert scraped_value(metrics, "feedbackhub_database_up") == 1
    assert scraped_value(metrics, "model_predictions_total", model="churn", version="v1") == 6


def test_a_sqlite_file_that_cannot_be_opened_is_a_503_and_nothing_is_written(var_dir: Path, tmp_path: Path) -> None:
    key = manage(var_dir, "create_api_key", "sqlite-faults").strip().splitlines()[-1]
    database = var_dir / "db.sqlite3"
    server = gunicorn_start(var_dir, tmp_path / "gunicorn.log")
    try:
        assert call(server, "POST", "/api/v1/predictions/", key, batch("before")[:1])[0] == 201
        aside = tmp_path / "aside"
        aside.mkdir()
        files = [path for path in var_dir.glob("db.sqlite3*") if path.is_file()]
        for path in files:
            path.rename(aside / path.name)
        database.mkdir()  # root may open any file, but not a directory as a database

        assert_unavailable(server, key)

        database.rmdir()
        for path in files:
            (aside / path.name).rename(path)
        assert_serves_again(server, key)
        assert server.process.poll() is None
    finally:
        server.stop(signal.SIGTERM)
        if database.is_dir():
            shutil.rmtree(database)


def test_a_sqlite_lock_held_past_the_busy_timeout_is_a_503_and_nothing_is_written(
    var_dir: Path, tmp_path: Path
) -> None:
    key = manage(var_dir, "create_api_key", "sqlite-lock").strip().splitlines()[-1]
    server = gunicorn_start(var_dir, tmp_path / "gunicorn.log", FEEDBACKHUB_SQLITE_BUSY_SECONDS="1")
    holder = sqlite3.connect(var_dir / "db.sqlite3", isolation_level=None)
    try:
        before = holder.execute("SELECT COUNT(*) FROM collector_prediction").fetchone()[0]
        holder.execute("BEGIN EXCLUSIVE")  # a backup or a stuck writer elsewhere

        status, headers, answer = call(server, "POST", "/api/v1/predictions/", key, batch("locked"))
        assert (status, answer["error"]["code"]) == (503, "unavailable"), (answer, server.log()[-3000:])
        assert int(headers["Retry-After"]) > 0

        holder.execute("ROLLBACK")
        assert holder.execute("SELECT COUNT(*) FROM collector_prediction").fetchone()[0] == before
        status, _, answer = call(server, "POST", "/api/v1/predictions/", key, batch("locked"))
        assert (status, answer["created"]) == (201, 5)
    finally:
        holder.close()
        server.stop(signal.SIGTERM)


@pytest.mark.django_db(transaction=True)
def test_a_postgresql_server_gone_mid_way_is_a_503_and_nothing_is_written(var_dir: Path, tmp_path: Path) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("runs in the PostgreSQL pass of the suite (DATABASE_URL=postgres://...)")
    settings = connection.settings_dict
    proxy = TcpProxy(target=(settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432)))
    proxy.resume()
    user = settings["USER"] + (f":{settings['PASSWORD']}" if settings["PASSWORD"] else "")
    url = f"postgres://{user}@127.0.0.1:{proxy.port}/{settings['NAME']}"  # the suite's own test database
    _, key = api_key_create(name="postgres-faults")
    server = gunicorn_start(var_dir, tmp_path / "gunicorn.log", DATABASE_URL=url)
    try:
        assert call(server, "POST", "/api/v1/predictions/", key, batch("before")[:1])[0] == 201

        proxy.cut()  # the open connection dies with it, and new ones are refused
        assert_unavailable(server, key)
        assert Prediction.objects.count() == 1

        proxy.resume()
        assert_serves_again(server, key)
        assert Prediction.objects.count() == 6
        assert server.process.poll() is None
    finally:
        server.stop(signal.SIGTERM)
        proxy.cut()
