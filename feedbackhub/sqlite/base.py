"""SQLite with connections kept across requests, dropped when the database file they opened is no longer there,
and write transactions queued on a lock file.

Opening a connection costs more than a small write (Django registers its SQL functions and runs the PRAGMAs on
each), so web workers keep theirs. An open connection follows its file, though: if the file is moved away or
replaced, it would go on writing to the moved file. The health check Django runs before a request's first query
therefore compares the file at the configured path with the one the connection opened, and a mismatch closes the
connection; the next one opens the path afresh (or fails there, and the request answers 503).

SQLite's own wait for its write lock sleeps 1, 2, 5, 10, 15, 20, 25 ms and more between tries: with web workers whose
write transactions last about a millisecond, a worker that finds the lock taken mostly sleeps after it is free
again, and the cores idle. So every write transaction first takes an exclusive lock on `<database>-writers.lock`,
tried again after each yield of the CPU for the first 2 ms (a single event's transaction holds it for about a third
of a millisecond: a sleep, however short, mostly wakes well after it is free, and the core idles meanwhile), then
polled in steps of at most half a millisecond (so it still gives up after the busy timeout, with SQLite's own
"database is locked", and a 503); once held, SQLite's lock is free unless a writer outside these transactions (a
single autocommitted statement, another program) holds it, and then SQLite's wait applies as before.

Django turns each statement's %s placeholders into SQLite's ? with a regular expression every time it runs; the
conversion of the short statements an ingest request runs is kept instead.
"""

import fcntl
import os
import time
from functools import lru_cache
from pathlib import Path
from typing import IO

from django.db import OperationalError
from django.db.backends.sqlite3 import base, creation

DatabaseFeatures = base.DatabaseFeatures
_YIELDING_SECONDS = 0.002
_FIRST_POLL_SECONDS = 0.00005
_LONGEST_POLL_SECONDS = 0.0005
_LONGEST_KEPT_CONVERSION = 4096  # characters: a batch's many-row statements are converted each time, as before


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _writers_lock_path(database: str) -> Path:
    return Path(f"{database}-writers.lock")


@lru_cache(maxsize=1024)
def _qmark_style(query: str) -> str:
    return base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


class SQLiteCursorWrapper(base.SQLiteCursorWrapper):
    def convert_query(self, query: str, *, param_names: list[str] | None = None) -> str:
        if param_names is None and len(query) <= _LONGEST_KEPT_CONVERSION:
            return _qmark_style(query)
        return super().convert_query(query, param_names=param_names)


class DatabaseCreation(creation.DatabaseCreation):
    def _destroy_test_db(self, test_database_name: str, verbosity: int) -> None:
        super()._destroy_test_db(test_database_name, verbosity)
        if test_database_name and not self.is_in_memory_db(test_database_name):
            _writers_lock_path(test_database_name).unlink(missing_ok=True)


class DatabaseWrapper(base.DatabaseWrapper):
    creation_class = DatabaseCreation
    _opened_file: tuple[int, int] | None = None
    _writers_file: IO[bytes] | None = None
    _holds_writers_lock = False

    def get_new_connection(self, conn_params: dict):  # noqa: ANN201 - a sqlite3.Connection
        connection = super().get_new_connection(conn_params)
        self._opened_file = None if self.is_in_memory_db() else _file_identity(str(self.settings_dict["NAME"]))
        return connection

    def create_cursor(self, name: str | None = None) -> SQLiteCursorWrapper:
        return self.connection.cursor(factory=SQLiteCursorWrapper)

    def _start_transaction_under_autocommit(self) -> None:
        self._writers_lock_take()
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._writers_lock_release()
            raise

    def _commit(self) -> None:
        try:
            super()._commit()
        finally:
            if self.connection is None or not self.connection.in_transaction:
                self._writers_lock_release()

    def _rollback(self) -> None:
        try:
            super()._rollback()
        finally:
            self._writers_lock_release()

    def _close(self) -> None:
        try:
            super()._close()
        finally:
            self._writers_lock_release()
            if self._writers_file is not None:
                self._writers_file.close()
                self._writers_file = None

    def _writers_lock_take(self) -> None:
        if self.is_in_memory_db() or self._holds_writers_lock:
            return
        if self._writers_file is None:
            try:
                self._writers_file = _writers_lock_path(self.settings_dict["NAME"]).open("ab")
            except OSError as error:  # the database's folder is gone or not writable: unavailable, as SQLite says
                raise OperationalError(f"cannot open the writers' lock file: {error}") from error
        started = time.monotonic()
        deadline = started + float(self.settings_dict["OPTIONS"].get("timeout", 5))
        yield_until = started + _YIELDING_SECONDS
        pause = _FIRST_POLL_SECONDS
        while True:
            try:
                fcntl.flock(self._writers_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now >= deadline:
                    raise OperationalError("database is locked") from None
                if now < yield_until:
                    os.sched_yield()
                    continue
                time.sleep(pause)
                pause = min(pause * 2, _LONGEST_POLL_SECONDS)
        self._holds_writers_lock = True

    def _writers_lock_release(self) -> None:
        # Whether or not the flag says it is held: an exception arriving between the flock and the flag (a signal,
        # a soft time limit) must not leave it held by a connection that is kept.
        self._holds_writers_lock = False
        if self._writers_file is not None:
            fcntl.flock(self._writers_file, fcntl.LOCK_UN)

    def is_usable(self) -> bool:
        if self.is_in_memory_db():
            return True
        return self._opened_file is not None and _file_identity(str(self.settings_dict["NAME"])) == self._opened_file
