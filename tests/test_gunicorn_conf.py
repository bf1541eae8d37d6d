"""The web server's workers: sync by default, threaded (gthread) when WEB_THREADS asks for more than one thread."""

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
        ({}, "sync", 1),
        ({"WEB_THREADS": "1"}, "sync", 1),
        ({"WEB_THREADS": "8"}, "gthread", 8),
        ({"WEB_THREADS": "2"}, "gthread", 2),
    ],
)
def test_workers_are_threaded_when_web_threads_asks(reload_conf, env, worker_class, threads) -> None:
    conf = reload_conf(**env)

    assert (conf.worker_class, conf.threads) == (worker_class, threads)


def test_a_bad_thread_count_says_which_setting(reload_conf) -> None:
    with pytest.raises(Exception, match="WEB_THREADS"):
        reload_conf(WEB_THREADS="0")
