"""The metrics endpoint carries the estimated accuracy and the latest drift check of each version."""

import pytest

from tests.conftest import ApiClient
from tests.loop.dashboard_data import seed_dashboard_data

pytestmark = pytest.mark.django_db


def test_each_version_has_its_confidence_figures_and_latest_drift_check(api: ApiClient) -> None:
    seed_dashboard_data(api, hours=30, per_hour=8)
    api.post_json("/api/v1/predictions/", {"model": "churn", "version": "v0", "input": [0.2, 0.3], "prediction": 0,
                                           "confidence": 0.7, "event_id": "waiting"})  # fmt: skip

    response = api.get("/api/v1/models/churn/metrics/")

    assert response.status_code == 200
    versions = {entry["version"]: entry for entry in response.json()["versions"]}
    v0 = versions.pop("v0")
    (champion,) = versions.values()
    assert v0["confidence"]["pending"] == 1 and v0["confidence"]["estimated_accuracy"] == pytest.approx(0.7)
    assert 0 < v0["confidence"]["labelled_accuracy"] <= 1 and v0["drift"] is None  # never checked
    drift = champion["drift"]
    assert drift["drifted"] and drift["window_predictions"] >= 100
    psi = {report["feature"]: report for report in drift["reports"] if report["method"] == "psi"}
    assert psi["x[0]"]["drifted"] and not psi["x[1]"]["drifted"] and psi["x[0]"]["threshold"] == 0.2
