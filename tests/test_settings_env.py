import os
import stat
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from feedbackhub.env import env_bool, env_int, env_list, env_mapping, generated_secret


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
