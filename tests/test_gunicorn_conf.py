"""The web server's workers: 4 threads each by default (gunicorn's threaded worker, balanced), sync when WEB_THREADS
asks for one thread."""

import importlib

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
