"""From a shift seeded into the hub's data to the alert: the drift series the hub exports, replayed through promtool."""

import json
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector import drift
from collector.models import DriftReport
from collector.tasks import check_drift
from tests.collector.test_drift_checks import churn_inputs, promoted_version, record
from tests.conftest import ApiClient
from tests.deploy.test_prometheus_files import ROOT, _tool, run

pytestmark = pytest.mark.django_db
DRIFT_FAMILIES = {"model_feature_drift", "model_prediction_drift", "model_drift_threshold"}


@pytest.fixture
def promtool() -> str:
    return _tool("promtool")


@pytest.fixture(autouse=True)
def _no_watermark_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drift, "WATERMARK_LAG", timedelta(0))


def drift_series(text: str) -> list[dict]:
    series = []
    for family in text_string_to_metric_families(text):
        if family.name not in DRIFT_FAMILIES:
            continue
        for sample in family.samples:
            selector = ", ".join(f'{key}="{value}"' for key, value in sorted(sample.labels.items()))
            series.append({"series": f"{sample.name}{{{selector}}}", "values": f"{sample.value}x60"})
    return series


def test_a_shift_seeded_into_one_feature_fires_model_feature_drift_for_it_alone(
    anonymous: ApiClient, promtool: str, tmp_path: Path
) -> None:
    promoted_version()
    record(churn_inputs(1500, seed=2, tenure_shift=6))
    check_drift()
    metrics = anonymous.get("/metrics").content.decode()
    tenure_psi = DriftReport.objects.get(feature="tenure", method="psi").value
    test_file = tmp_path / "drift_test.yml"
    test_file.write_text(
        json.dumps(  # JSON is YAML
            {
                "rule_files": [str(ROOT / "deploy" / "alerts.yml")],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": "1m",
                        "input_series": drift_series(metrics),
                        "alert_rule_test": [
                            {"eval_time": "20m", "alertname": "ModelFeatureDrift", "exp_alerts": []},
                            {
                                "eval_time": "45m",
                                "alertname": "ModelFeatureDrift",
                                "exp_alerts": [
                                    {
                                        "exp_labels": {
                                            "severity": "warning",
                                            "model": "churn",
                                            "version": "v1",
                                            "feature": "tenure",
                                            "method": "psi",
                                        },
                                        "exp_annotations": {
                                            "summary": f"churn v1: input tenure drifted (PSI {tenure_psi:.2f})",
                                            "description": (
                                                "The distribution of tenure over the drift window has differed from "
                                                "the version's reference by more than the model's PSI threshold for "
                                                "30 minutes."
                                            ),
                                        },
                                    }
                                ],
                            },
                            {"eval_time": "45m", "alertname": "ModelPredictionDrift", "exp_alerts": []},
                        ],
                    }
                ],
            }
        )
    )

    result = run(promtool, "test", "rules", str(test_file))

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_metrics_output_with_drift_passes_promtool(anonymous: ApiClient, promtool: str) -> None:
    promoted_version()
    record(churn_inputs(300, seed=3))
    check_drift()
    text = anonymous.get("/metrics").content.decode()

    result = run(promtool, "check", "metrics", stdin=text)

    assert "model_feature_drift{" in text and "model_estimated_accuracy{" in text
    assert result.returncode == 0, result.stdout + result.stderr
