"""deploy/ checked with Debian's promtool, and a real Prometheus server scraping the hub on loopback.

Where promtool is not installed the tests skip with a reason; with CI=true they fail instead.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ApiClient, prediction_body

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def prometheus_binary() -> str:
    return _tool("prometheus")


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package 'prometheus')"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; CI requires it")
        pytest.skip(message)
    return path


@pytest.fixture
def promtool() -> str:
    return _tool("promtool")


def run(*command: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.compose.yml"])
def test_the_prometheus_config_is_valid(promtool: str, config: str) -> None:
    result = run(promtool, "check", "config", str(DEPLOY / config))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alert_rules_are_valid(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(DEPLOY / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_fire_on_synthetic_series(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(ROOT / "tests" / "deploy" / "alerts_test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def populate(api: ApiClient) -> None:
    """Some data of every kind, so /metrics shows every family."""
    api.post_json("/api/v1/predictions/", [prediction_body(event_id=f"b{n}", actual=n % 3 % 2) for n in range(6)])
    api.post_json("/api/v1/predictions/", prediction_body(model="churn", version="v2", actual=1))
    api.post_json("/api/v1/predictions/", prediction_body(model="topics", prediction="news", actual="sport"))
    api.post_json("/api/v1/predictions/", prediction_body(model="price", prediction=3.5, actual=4.0))
    api.post_json("/api/v1/feedback/", {"kind": "thumbs_down", "interaction_id": "s1", "model": "churn"})


@pytest.mark.django_db
def test_the_metrics_output_passes_promtool(api: ApiClient, promtool: str) -> None:
    populate(api)

    result = run(promtool, "check", "metrics", stdin=api.get("/metrics").content.decode())

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "" and result.stderr.strip() == ""


@pytest.mark.django_db
def test_the_dashboard_queries_only_metrics_the_hub_exports(api: ApiClient) -> None:
    populate(api)
    exported = set(re.findall(r"^# TYPE (\w+) (\w+)", api.get("/metrics").content.decode(), re.M))
    names = {name for name, _ in exported} | {f"{name}_total" for name, kind in exported if kind == "counter"}
    names |= {f"{name}_bucket" for name, kind in exported if kind == "histogram"}
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())

    queried = {
        name
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(
            r"\b([a-z_]+(?:_total|_seconds|_bucket|_accuracy|_score|_mae|_rmse|_precision|_recall))\b", target["expr"]
        )
    }

    assert queried, "the dashboard has no queries"
    assert queried <= names, queried - names


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def query(port: int, promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test server
        return json.load(response)["data"]["result"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_real_prometheus_server_reads_the_same_accuracy_as_the_api(
    api: ApiClient, live_server, tmp_path: Path
) -> None:
    prometheus = prometheus_binary()
    populate(api)
    target = urllib.parse.urlparse(live_server.url).netloc
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs: [{job_name: feedbackhub, metrics_path: /metrics, "
        f"static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our own arguments
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        result: list[dict] = []
        while time.monotonic() < deadline and not result:
            time.sleep(1)
            try:
                result = query(port, 'model_accuracy{model="churn", version="v1"}')
            except OSError:
                continue
        assert result, "Prometheus never scraped model_accuracy from the hub"
        expected = api.get("/api/v1/models/churn/metrics/", {"version": "v1"}).json()["versions"][0]["metrics"]
        assert float(result[0]["value"][1]) == pytest.approx(expected["accuracy"])
        assert query(port, 'up{job="feedbackhub"}')[0]["value"][1] == "1"
    finally:
        server.terminate()
        server.wait(timeout=30)
