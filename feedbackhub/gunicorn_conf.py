"""gunicorn settings used by `make run` (`-c python:feedbackhub.gunicorn_conf`)."""

from typing import Any

# Imported here, when the master starts: importing inside child_exit, which runs in the SIGCHLD handler, can
# interrupt its own half-finished import when two workers exit together ("partially initialized module").
from prometheus_client import multiprocess

# Longer than SQLite's busy timeout (FEEDBACKHUB_SQLITE_BUSY_SECONDS, 30 s), so a request waiting on a lock held
# elsewhere answers 503 rather than having its worker killed.
timeout = 60


def child_exit(server: Any, worker: Any) -> None:
    # In multiprocess mode a dead worker's live gauges must be dropped from /metrics.
    multiprocess.mark_process_dead(worker.pid)
