"""The SQLite backend keeps connections across requests, still counts queries for /metrics, and lets go of a
connection whose database file was moved away."""

import pytest
from django.db import connection
from django_prometheus.db.metrics import execute_total

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _sqlite_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite backend")


def executed() -> float:
    return execute_total.labels(connection.alias, connection.vendor)._value.get()


def test_queries_are_still_counted_for_metrics() -> None:
    before = executed()
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE counted (n integer)")
        cursor.executemany("INSERT INTO counted (n) VALUES (%s)", [(1,), (2,)])

    assert executed() == before + 3


def test_a_connection_is_usable_while_its_file_is_where_it_was_opened() -> None:
    connection.ensure_connection()

    assert connection.is_usable()


def test_a_connection_to_a_file_that_is_gone_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    connection.ensure_connection()
    monkeypatch.setitem(connection.settings_dict, "NAME", str(connection.settings_dict["NAME"]) + "-moved")

    assert not connection.is_usable()
