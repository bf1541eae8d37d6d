import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]


def run_check_deploy(tmp_path: Path, **overrides: str) -> subprocess.CompletedProcess:
    """`manage.py check --deploy` in a fresh process, with the environment a production deployment sets."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env.update(
        {
            "DEBUG": "false",
            "FEEDBACKHUB_HTTPS": "true",
            "SECRET_KEY": secrets.token_urlsafe(64),
            "ALLOWED_HOSTS": "feedback.example.com",
            "CSRF_TRUSTED_ORIGINS": "https://feedback.example.com",
            "FEEDBACKHUB_VAR_DIR": str(tmp_path / "var"),
            **overrides,
        }
    )
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_is_clean_under_production_settings(tmp_path: Path) -> None:
    result = run_check_deploy(tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    ("overrides", "check_id"),
    [({"FEEDBACKHUB_HTTPS": "false"}, "security.W004"), ({"DEBUG": "true"}, "security.W018")],
)
def test_check_deploy_fails_when_production_settings_are_missing(
    tmp_path: Path, overrides: dict[str, str], check_id: str
) -> None:
    result = run_check_deploy(tmp_path, **overrides)

    assert result.returncode != 0
    assert check_id in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"FEEDBACKHUB_WRITE_RATE": "lots"}, "FEEDBACKHUB_WRITE_RATE must look like 6000/min"),
        ({"CACHE_URL": "memcached://cache:11211"}, "CACHE_URL must be a redis://, rediss://, file:/// or locmem://"),
    ],
)
def test_a_bad_throttle_setting_stops_start_up_with_its_name(
    tmp_path: Path, overrides: dict[str, str], message: str
) -> None:
    result = run_check_deploy(tmp_path, **overrides)

    assert result.returncode != 0
    assert message in result.stderr
