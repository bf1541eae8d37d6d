"""PostgreSQL whose health check before a request's first query costs no round trip while the kept connection is
idle and has heard nothing from the server.

Connections are kept across requests (CONN_MAX_AGE) and checked before each request's first query, so that one
broken while the worker idled (a server restart, a connection ended by the server) is replaced instead of failing the
request. Django checks with `SELECT 1`, a round trip that cost about a tenth of a single-prediction request. An idle
connection has nothing to read unless the server sent something: a server that ends a connection sends its reason
and closes the socket, which then reads as ready. So a connection with nothing to read is taken as usable at once,
and only one with pending input (or none that psycopg still holds open) is checked as before. A server that vanished
without a word is found by the request's first query either way: it fails, and the request answers 503.
"""

import select

from django.db.backends.postgresql import base


def _has_unread_input(descriptor: int) -> bool:
    poller = select.poll()
    poller.register(descriptor, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        if not _has_unread_input(connection.fileno()):
            return True
        return super().is_usable()
