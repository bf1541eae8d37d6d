"""deploy/compose.yaml: Compose accepts it, and it runs what the README promises (web, worker, exactly one beat,
PostgreSQL, Redis, Prometheus with the alert rules, Grafana with the dashboard), all on one database and broker."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SECRETS = {"SECRET_KEY": "k" * 50, "POSTGRES_PASSWORD": "pg-secret", "GRAFANA_ADMIN_PASSWORD": "graf-secret"}


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if os.environ.get("CI") == "true":
        pytest.fail("neither `docker compose` nor docker-compose is installed: .ci/run installs docker-compose")
    pytest.skip("neither `docker compose` nor docker-compose is installed")


def compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if name not in SECRETS} | env
    return subprocess.run(
        [*compose_command(), "-f", str(DEPLOY / "compose.yaml"), "config"],
        capture_output=True, text=True, env=environment, cwd=DEPLOY, timeout=60,
    )  # fmt: skip


def test_compose_accepts_the_file_and_it_runs_the_whole_stack() -> None:
    result = compose_config(**SECRETS)

    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker", "beat", "prometheus", "grafana"}
    hub = ("web", "worker", "beat", "migrate")
    assert len({services[name]["environment"]["DATABASE_URL"] for name in hub}) == 1
    assert {services[name]["environment"]["CELERY_BROKER_URL"] for name in hub} == {"redis://redis:6379/0"}
    assert services["beat"]["deploy"]["replicas"] == 1 and "beat" in services["beat"]["command"]
    assert "worker" in services["worker"]["command"]
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    mounts = " ".join(str(volume) for volume in services["prometheus"]["volumes"])
    assert "alerts.yml" in mounts and "prometheus.compose.yml" in mounts
    assert any("grafana-dashboard.json" in str(volume) for volume in services["grafana"]["volumes"])


def test_a_missing_secret_stops_compose_with_a_message() -> None:
    result = compose_config(POSTGRES_PASSWORD="pg-secret", GRAFANA_ADMIN_PASSWORD="graf-secret")

    assert result.returncode != 0
    assert "set SECRET_KEY in deploy/.env" in result.stderr
