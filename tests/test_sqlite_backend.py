"""The SQLite backend keeps connections across requests, lets go of a connection whose database file was moved away,
and queues write transactions on a lock file."""

import threading
from typing import Any

import pytest
from django.db import OperationalError, connection

from feedbackhub.sqlite.base import DatabaseWrapper

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _sqlite_only() -> None:
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite backend")


def test_a_connection_is_usable_while_its_file_is_where_it_was_opened() -> None:
    connection.ensure_connection()

    assert connection.is_usable()


def test_a_connection_to_a_file_that_is_gone_is_not_usable(monkeypatch: pytest.MonkeyPatch) -> None:
    connection.ensure_connection()
    monkeypatch.setitem(connection.settings_dict, "NAME", str(connection.settings_dict["NAME"]) + "-moved")

    assert not connection.is_usable()


# --- write transactions queue on a lock file -------------------------------------------------------------------


def other_connection(tmp_path: Any, *, timeout: float) -> Any:
    """A second connection of this backend to a database file of its own, as another process would hold."""
    settings = {
        **connection.settings_dict,
        "NAME": str(tmp_path / "writers.sqlite3"),
        "OPTIONS": {**connection.settings_dict["OPTIONS"], "timeout": timeout},
    }
    return DatabaseWrapper(settings, alias=f"writers-{timeout}")


def begin(wrapper: Any) -> None:
    wrapper.ensure_connection()
    wrapper._start_transaction_under_autocommit()


def test_a_second_write_transaction_waits_for_the_first_and_then_goes_on(tmp_path: Any) -> None:
    first, second = other_connection(tmp_path, timeout=10), other_connection(tmp_path, timeout=10)
    begin(first)
    first.cursor().execute("CREATE TABLE t (n integer)")
    second.inc_thread_sharing()
    done: list[bool] = []
    waiting = threading.Thread(
        target=lambda: (begin(second), second.cursor().execute("INSERT INTO t VALUES (2)"), done.append(True))
    )
    waiting.start()
    waiting.join(timeout=0.3)
    assert waiting.is_alive()  # held back by the first transaction

    first.cursor().execute("INSERT INTO t VALUES (1)")
    first.commit()
    waiting.join(timeout=10)
    second.commit()

    assert done == [True]
    assert [n for (n,) in first.cursor().execute("SELECT n FROM t ORDER BY n").fetchall()] == [1, 2]
    first.close()
    second.close()
    second.dec_thread_sharing()


def test_a_write_that_waits_past_the_busy_timeout_gets_database_is_locked(tmp_path: Any) -> None:
    holder, late = other_connection(tmp_path, timeout=10), other_connection(tmp_path, timeout=0.2)
    begin(holder)

    with pytest.raises(OperationalError, match="database is locked"):
        begin(late)
    assert not late.connection.in_transaction

    holder.rollback()  # a rollback lets go as a commit does
    begin(late)
    late.commit()
    holder.close()
    late.close()


def test_closing_a_connection_in_a_transaction_lets_the_next_writer_in(tmp_path: Any) -> None:
    lost, next_one = other_connection(tmp_path, timeout=10), other_connection(tmp_path, timeout=0.2)
    begin(lost)
    lost.close()

    begin(next_one)
    next_one.commit()
    next_one.close()


def test_the_lock_file_is_let_go_even_when_the_flag_missed_that_it_was_taken(tmp_path: Any) -> None:
    interrupted, next_one = other_connection(tmp_path, timeout=10), other_connection(tmp_path, timeout=0.2)
    begin(interrupted)
    interrupted._holds_writers_lock = False  # as if an exception arrived between the flock and the flag

    interrupted.rollback()

    begin(next_one)
    next_one.commit()
    interrupted.close()
    next_one.close()


def test_placeholders_and_literal_percent_signs_convert_the_same_when_kept() -> None:
    statement = "SELECT '100%%', %s, %s"
    with connection.cursor() as cursor:
        rows = [cursor.execute(statement, [n, "x"]).fetchone() for n in range(3)]
        long_statement = f"SELECT '{'%%' * 3000}', %s"  # too long to keep: converted each time
        long_row = cursor.execute(long_statement, [7]).fetchone()

    assert rows == [("100%", n, "x") for n in range(3)]
    assert long_row == ("%" * 3000, 7)
