import os
import stat
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from feedbackhub.env import (
    Rate,
    env_bool,
    env_cache,
    env_int,
    env_list,
    env_mapping,
    env_rate,
    generated_secret,
    parse_rate,
)


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("False", False), ("1", True), ("off", False)])
def test_env_bool_reads_the_usual_spellings(monkeypatch: pytest.MonkeyPatch, raw: str, expected: bool) -> None:
    monkeypatch.setenv("SOME_FLAG", raw)
    assert env_bool("SOME_FLAG", "false") is expected


def test_env_bool_fails_loudly_on_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_FLAG", "ture")
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG must be true or false"):
        env_bool("SOME_FLAG", "false")


def test_env_int_checks_type_and_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_NUMBER", "two")
    with pytest.raises(ImproperlyConfigured, match="whole number"):
        env_int("SOME_NUMBER", "1")
    monkeypatch.setenv("SOME_NUMBER", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        env_int("SOME_NUMBER", "1", minimum=1)


def test_env_list_splits_on_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_LIST", " a.example, b.example ,,")
    assert env_list("SOME_LIST", "") == ["a.example", "b.example"]


def test_env_mapping_reads_name_value_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOME_MAP", " torch = pkg.trainers.Torch , tf=pkg.Tf")
    assert env_mapping("SOME_MAP", "") == {"torch": "pkg.trainers.Torch", "tf": "pkg.Tf"}
    monkeypatch.setenv("SOME_MAP", "torch")
    with pytest.raises(ImproperlyConfigured, match="name=value pairs, got 'torch'"):
        env_mapping("SOME_MAP", "")


def test_the_generated_secret_is_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "var" / "secret_key"

    first = generated_secret(path)

    assert len(first) >= 50
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert generated_secret(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("6000/min", Rate(6000, 60)), ("10/s", Rate(10, 1)), (" 5 / hour ", Rate(5, 3600)), ("1/day", Rate(1, 86400))],
)
def test_rates_use_drfs_syntax(raw: str, expected: Rate) -> None:
    assert parse_rate("SOME_RATE", raw) == expected


def test_a_rate_can_be_off() -> None:
    assert parse_rate("SOME_RATE", "OFF") is None


@pytest.mark.parametrize("raw", ["6000", "0/min", "10/week", "ten/min", "-1/s", ""])
def test_a_bad_rate_stops_start_up(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("SOME_RATE", raw)
    with pytest.raises(ImproperlyConfigured, match="SOME_RATE must look like 6000/min"):
        env_rate("SOME_RATE", "100/min")


def test_the_cache_is_a_file_cache_under_the_var_dir_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOME_CACHE", raising=False)
    cache = env_cache("SOME_CACHE", Path("/srv/var/cache"))
    assert cache == {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": "/srv/var/cache"}


@pytest.mark.parametrize(
    ("url", "backend", "location"),
    [
        ("redis://redis:6379/1", "django.core.cache.backends.redis.RedisCache", "redis://redis:6379/1"),
        (
            "rediss://:secret@redis:6380/0",
            "django.core.cache.backends.redis.RedisCache",
            "rediss://:secret@redis:6380/0",
        ),
        ("file:///var/cache/fbh", "django.core.cache.backends.filebased.FileBasedCache", "/var/cache/fbh"),
        ("locmem://", "django.core.cache.backends.locmem.LocMemCache", None),
    ],
)
def test_cache_urls(monkeypatch: pytest.MonkeyPatch, url: str, backend: str, location: str | None) -> None:
    monkeypatch.setenv("SOME_CACHE", url)
    cache = env_cache("SOME_CACHE", Path("/unused"))
    assert (cache["BACKEND"], cache.get("LOCATION")) == (backend, location)


@pytest.mark.parametrize("url", ["memcached://cache:11211", "file://relative/path", "redis"])
def test_an_unusable_cache_url_stops_start_up(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("SOME_CACHE", url)
    with pytest.raises(ImproperlyConfigured, match="SOME_CACHE"):
        env_cache("SOME_CACHE", Path("/unused"))


def test_postgresql_connections_use_the_project_backend_with_tcp_keepalives_and_prepared_statements() -> None:
    from feedbackhub.settings import _database_from_url

    config = _database_from_url("postgres://hub@db:5432/hub?keepalives_idle=60")
    pooled = _database_from_url("postgres://hub@db:5432/hub?server_side_binding=false&currentSchema=hub")

    assert config["ENGINE"] == "feedbackhub.postgresql"
    assert config["CONN_HEALTH_CHECKS"] is True
    assert config["OPTIONS"] == {
        "keepalives_idle": 60, "keepalives_interval": 10, "keepalives_count": 3,
        "server_side_binding": True, "prepare_threshold": 5, "options": "-c plan_cache_mode=force_custom_plan",
    }  # fmt: skip
    assert pooled["OPTIONS"]["server_side_binding"] is False
    assert pooled["OPTIONS"]["options"] == "-c plan_cache_mode=force_custom_plan -c search_path=hub"
    assert not config["PLAN_CACHE_MODE_IN_URL"] and not pooled["PLAN_CACHE_MODE_IN_URL"]
    chosen = _database_from_url("postgres://hub@db:5432/hub?options=-c%20plan_cache_mode%3Dforce_generic_plan")
    assert chosen["OPTIONS"]["options"] == "-c plan_cache_mode=force_custom_plan -c plan_cache_mode=force_generic_plan"
    assert chosen["PLAN_CACHE_MODE_IN_URL"]
