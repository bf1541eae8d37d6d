"""The PostgreSQL backend checks a kept connection between requests without a round trip while the connection is
idle and silent, and still replaces one the server has ended; what a pipeline sends can be held back and sent whole."""

import socket
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection, connections
from psycopg.pq import TransactionStatus

from feedbackhub.postgresql.base import sends_coalesced

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the PostgreSQL backend")


@pytest.fixture
def kept() -> Iterator[Any]:
    """A connection of this backend of its own, as a web worker keeps one across requests."""
    wrapper = connections.create_connection("default")
    wrapper.ensure_connection()
    yield wrapper
    wrapper.close()


@pytest.fixture
def observer() -> Iterator[psycopg.Connection]:
    settings = connection.settings_dict
    with psycopg.connect(
        host=settings["HOST"], port=settings["PORT"] or 5432, user=settings["USER"], dbname=settings["NAME"],
        password=settings["PASSWORD"] or None, autocommit=True,
    ) as observer:  # fmt: skip
        yield observer


def last_statement(observer: psycopg.Connection, backend_pid: int) -> str:
    [(query,)] = observer.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [backend_pid]).fetchall()
    return query


def next_request_cursor(wrapper: Any) -> Any:
    """A cursor as a request's first query gets it: after request_started's check, through the health check."""
    wrapper.close_if_unusable_or_obsolete()
    return wrapper.cursor()


def test_the_health_check_of_an_idle_connection_sends_no_statement(kept: Any, observer: psycopg.Connection) -> None:
    assert kept.health_check_enabled
    backend_pid = kept.connection.info.backend_pid
    with kept.cursor() as cursor:
        cursor.execute("SELECT 'the last statement of a request'")

    with next_request_cursor(kept) as cursor:
        assert kept.connection.info.backend_pid == backend_pid
        assert last_statement(observer, backend_pid) == "SELECT 'the last statement of a request'"
        cursor.execute("SELECT 2")
        assert cursor.fetchone() == (2,)


def test_a_connection_the_server_ended_is_replaced_before_the_next_request(
    kept: Any, observer: psycopg.Connection
) -> None:
    ended_pid = kept.connection.info.backend_pid
    observer.execute("SELECT pg_terminate_backend(%s)", [ended_pid])
    deadline = time.monotonic() + 10
    while observer.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [ended_pid]).fetchall():
        assert time.monotonic() < deadline, "the server did not end the connection"
        time.sleep(0.05)

    with next_request_cursor(kept) as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (backend_pid,) = cursor.fetchone()

    assert backend_pid != ended_pid


def test_a_closed_connection_is_not_usable(kept: Any) -> None:
    kept.connection.close()

    assert not kept.is_usable()


def test_a_connection_left_in_a_failed_transaction_is_not_usable(kept: Any) -> None:
    kept.connection.execute("BEGIN")
    with pytest.raises(psycopg.errors.DivisionByZero):
        kept.connection.execute("SELECT 1 / 0")
    assert kept.connection.info.transaction_status == TransactionStatus.INERROR

    assert not kept.is_usable()


def tcp_cork(connection: psycopg.Connection) -> int:
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, connection.fileno())
    try:
        return probe.getsockopt(socket.IPPROTO_TCP, socket.TCP_CORK)
    finally:
        probe.detach()


@pytest.mark.skipif(not hasattr(socket, "TCP_CORK"), reason="TCP_CORK is Linux's")
def test_a_pipeline_in_sends_coalesced_is_held_back_then_sent_whole(kept: Any) -> None:
    raw = kept.connection
    with raw.pipeline():
        with sends_coalesced(raw):
            held = tcp_cork(raw)
            first = raw.execute("SELECT 1")
            second = raw.execute("SELECT 2")
        released = tcp_cork(raw)

    assert (held, released) == (1, 0)
    assert (first.fetchone(), second.fetchone()) == ((1,), (2,))
    assert raw.fileno() >= 0 and raw.execute("SELECT 3").fetchone() == (3,)  # the descriptor is still psycopg's


@pytest.mark.skipif(not hasattr(socket, "TCP_CORK"), reason="TCP_CORK is Linux's")
def test_an_exception_in_sends_coalesced_still_releases_what_was_held(kept: Any) -> None:
    raw = kept.connection
    with pytest.raises(RuntimeError), sends_coalesced(raw):  # noqa: PT012
        assert tcp_cork(raw) == 1
        raise RuntimeError("the block gave up")

    assert tcp_cork(raw) == 0
    assert raw.execute("SELECT 1").fetchone() == (1,)


def test_over_a_unix_socket_sends_coalesced_lets_the_block_run_as_it_is() -> None:
    settings = connection.settings_dict
    try:
        local = psycopg.connect(
            host="/var/run/postgresql", port=settings["PORT"] or 5432, user=settings["USER"], dbname=settings["NAME"],
            autocommit=True, connect_timeout=3,
        )  # fmt: skip
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL socket in /var/run/postgresql")
    with local, local.pipeline(), sends_coalesced(local):
        answer = local.execute("SELECT 1")
    assert answer.fetchone() == (1,)
