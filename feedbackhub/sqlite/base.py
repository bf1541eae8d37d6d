"""SQLite with connections kept across requests, dropped when the database file they opened is no longer there.

Opening a connection costs more than a small write (Django registers its SQL functions and runs the PRAGMAs on
each), so web workers keep theirs. An open connection follows its file, though: if the file is moved away or
replaced, it would go on writing to the moved file. The health check Django runs before a request's first query
therefore compares the file at the configured path with the one the connection opened, and a mismatch closes the
connection; the next one opens the path afresh (or fails there, and the request answers 503).
"""

import os

from django_prometheus.db.backends.sqlite3 import base
from django_prometheus.db.common import ExportingCursorWrapper

DatabaseFeatures = base.DatabaseFeatures


def _file_identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


class DatabaseWrapper(base.DatabaseWrapper):
    _opened_file: tuple[int, int] | None = None
    _cursor_class: type | None = None

    def create_cursor(self, name: str | None = None):  # noqa: ANN201 - a sqlite3.Cursor
        # django-prometheus builds its counting cursor class anew for every cursor; one per connection does.
        if self._cursor_class is None:
            self._cursor_class = ExportingCursorWrapper(self.CURSOR_CLASS, self.alias, self.vendor)
        return self.connection.cursor(factory=self._cursor_class)

    def get_new_connection(self, conn_params: dict):  # noqa: ANN201 - a sqlite3.Connection
        connection = super().get_new_connection(conn_params)
        self._opened_file = None if self.is_in_memory_db() else _file_identity(str(self.settings_dict["NAME"]))
        return connection

    def is_usable(self) -> bool:
        if self.is_in_memory_db():
            return True
        return self._opened_file is not None and _file_identity(str(self.settings_dict["NAME"])) == self._opened_file
