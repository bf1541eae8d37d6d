"""The web server's workers: 4 threads each by default (gunicorn's threaded worker, balanced), sync when WEB_THREADS
asks for one thread."""

import importlib
import signal
from pathlib import Path

import pytest

from feedbackhub import gunicorn_conf


@pytest.fixture
def reload_conf(monkeypatch: pytest.MonkeyPatch):
    def reload(**env: str):
        monkeypatch.delenv("WEB_THREADS", raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return importlib.reload(gunicorn_conf)

    yield reload
    monkeypatch.undo()
    importlib.reload(gunicorn_conf)


@pytest.mark.parametrize(
    ("env", "worker_class", "threads"),
    [
        ({}, "feedbackhub.gunicorn_workers.BalancedThreadWorker", 4),
        ({"WEB_THREADS": "1"}, "sync", 1),
        ({"WEB_THREADS": "8"}, "feedbackhub.gunicorn_workers.BalancedThreadWorker", 8),
        ({"WEB_THREADS": "2"}, "feedbackhub.gunicorn_workers.BalancedThreadWorker", 2),
    ],
)
def test_workers_are_threaded_unless_web_threads_asks_for_one(reload_conf, env, worker_class, threads) -> None:
    conf = reload_conf(**env)

    assert (conf.worker_class, conf.threads) == (worker_class, threads)


def test_a_bad_thread_count_says_which_setting(reload_conf) -> None:
    with pytest.raises(Exception, match="WEB_THREADS"):
        reload_conf(WEB_THREADS="0")


@pytest.mark.slow
def test_gunicorn_stops_cleanly_without_a_prometheus_multiprocess_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run by hand, without `make run`'s environment: each process keeps its own metrics, and a worker's exit has no
    metrics files to drop (prometheus_client's mark_process_dead raised a TypeError in the master without one)."""
    from tests.e2e.gunicorn_proxy import gunicorn_start

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    server = gunicorn_start(
        tmp_path / "var", tmp_path / "gunicorn.log", "--workers", "2", "--config", "python:feedbackhub.gunicorn_conf"
    )

    assert server.stop(signal.SIGTERM) == 0
    assert "Traceback" not in server.log()
