"""gunicorn settings used by `make run` (`-c python:feedbackhub.gunicorn_conf`)."""

import os
from pathlib import Path
from typing import Any

# Imported here, when the master starts: importing inside child_exit, which runs in the SIGCHLD handler, can
# interrupt its own half-finished import when two workers exit together ("partially initialized module").
from prometheus_client import multiprocess

from feedbackhub.env import env_int
from feedbackhub.gunicorn_workers import worker_exited

# Longer than a SQLite write can wait (FEEDBACKHUB_SQLITE_BUSY_SECONDS, 30 s, for the writers' lock file, then as long
# again for SQLite's own lock when a writer outside the queue holds it), so such a request answers 503 rather than
# having its worker killed.
timeout = 2 * env_int("FEEDBACKHUB_SQLITE_BUSY_SECONDS", "30", minimum=1) + 10


# Threads in each worker process. Above 1, gunicorn's threaded worker, which keeps connections alive, with new
# connections going to the worker that holds the fewest (feedbackhub/gunicorn_workers.py): single predictions that
# arrive together are written in one transaction (collector.group_commit), and a worker goes on while its requests
# wait for a database across the network. On 2 cores, 4 threads served 1.2-1.3x the single predictions of sync
# workers on SQLite and 1.2x on PostgreSQL, the same batches on SQLite and 0.9x on PostgreSQL; clients that open a
# connection for every request, four at a time, got 0.77x (sixteen: 1.1x). 1: sync workers.
threads = env_int("WEB_THREADS", "4", minimum=1)
worker_class = "feedbackhub.gunicorn_workers.BalancedThreadWorker" if threads > 1 else "sync"


# Each worker touches a heartbeat file after every request; on a disk file system that is a metadata write, in
# memory it is not (gunicorn's own advice, for containers above all).
if Path("/dev/shm").is_dir():  # noqa: S108 - shared memory, not a temporary file
    worker_tmp_dir = "/dev/shm"  # noqa: S108


def child_exit(server: Any, worker: Any) -> None:
    # In multiprocess mode a dead worker's live gauges must be dropped from /metrics. Without the directory (gunicorn
    # started by hand, not by `make run`) each process keeps its own metrics, and there is nothing to drop.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(worker.pid)
    worker_exited(worker)
