"""gunicorn settings used by `make run` (`-c python:feedbackhub.gunicorn_conf`)."""

from pathlib import Path
from typing import Any

# Imported here, when the master starts: importing inside child_exit, which runs in the SIGCHLD handler, can
# interrupt its own half-finished import when two workers exit together ("partially initialized module").
from prometheus_client import multiprocess

from feedbackhub.env import env_int, env_str

# Longer than a SQLite write can wait (FEEDBACKHUB_SQLITE_BUSY_SECONDS, 30 s, for the writers' lock file, then as long
# again for SQLite's own lock when a writer outside the queue holds it), so such a request answers 503 rather than
# having its worker killed.
timeout = 2 * env_int("FEEDBACKHUB_SQLITE_BUSY_SECONDS", "30", minimum=1) + 10


def default_threads(database_url: str) -> int:
    """Threads a worker process runs by default: several on PostgreSQL, where a request spends much of its time
    waiting for round trips and the single predictions that arrive together are written in one transaction
    (collector.group_commit); one on SQLite, where a request never waits off the CPU and threads only add the
    switching between them (measured: 10% fewer single events a second with 4)."""
    return 1 if not database_url or database_url.startswith("sqlite") else 4


threads = env_int("WEB_THREADS", str(default_threads(env_str("DATABASE_URL", ""))), minimum=1)
# gthread also keeps connections alive, and a slow client holds one thread rather than a whole process.
worker_class = "gthread" if threads > 1 else "sync"


# Each worker touches a heartbeat file after every request; on a disk file system that is a metadata write, in
# memory it is not (gunicorn's own advice, for containers above all).
if Path("/dev/shm").is_dir():  # noqa: S108 - shared memory, not a temporary file
    worker_tmp_dir = "/dev/shm"  # noqa: S108


def child_exit(server: Any, worker: Any) -> None:
    # In multiprocess mode a dead worker's live gauges must be dropped from /metrics.
    multiprocess.mark_process_dead(worker.pid)
