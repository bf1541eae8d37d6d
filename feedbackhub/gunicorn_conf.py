"""gunicorn settings used by `make run` (`-c python:feedbackhub.gunicorn_conf`)."""

from typing import Any


def child_exit(server: Any, worker: Any) -> None:
    # In multiprocess mode a dead worker's live gauges must be dropped from /metrics.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
