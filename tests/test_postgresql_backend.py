"""The PostgreSQL backend checks a kept connection between requests without a round trip while the connection is
idle and silent, and still replaces one the server has ended."""

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.db import connection, connections
from psycopg.pq import TransactionStatus

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
