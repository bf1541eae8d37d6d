"""PostgreSQL whose health check before a request's first query costs no round trip while the kept connection is
idle and has heard nothing from the server.

Connections are kept across requests (CONN_MAX_AGE) and checked before each request's first query, so that one
broken while the worker idled (a server restart, a connection ended by the server) is replaced instead of failing the
request. Django checks with `SELECT 1`, a round trip that cost about a tenth of a single-prediction request. An idle
connection (outside any transaction) has nothing to read unless the server sent something: a server that ends a
connection sends its reason and closes the socket, which then reads as ready. So a connection with nothing to read is
taken as usable at once, and one with pending input, one left inside a transaction (or failed in it), or one psycopg
no longer holds open is checked as before. A server host that vanished without a word (no FIN) is found by TCP
keepalives (settings.py asks for them) or by the request's first query, which then fails, and the request answers 503.
"""

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus


def _has_unread_input(descriptor: int) -> bool:
    poller = select.poll()
    poller.register(descriptor, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            quiet = connection.info.transaction_status == TransactionStatus.IDLE and not _has_unread_input(
                connection.fileno()
            )
        except base.Database.Error:  # no socket left: as Django's own check would find
            return False
        return quiet or super().is_usable()
