import pytest

from collector.models import Prediction
from tests.conftest import ApiClient

pytestmark = pytest.mark.django_db
URL = "/log-feedback"
SEED_BODY = {
    "input_data": [[0.5, 1.0, 2.1]],
    "prediction": [1],
    "actual_value": None,
    "model_version": "v1.0",
    "latency": 0.042,
}


def test_it_takes_the_seed_loggers_body(api: ApiClient) -> None:
    response = api.post_json(URL, SEED_BODY)

    assert response.status_code == 201
    assert response.json() == {"message": "Feedback logged successfully", "id": Prediction.objects.get().pk}
    row = Prediction.objects.get()
    assert (row.input, row.prediction, row.actual) == ([[0.5, 1.0, 2.1]], [1], None)
    assert row.model_version.version == "v1.0"
    assert row.latency_ms == pytest.approx(42.0)
    assert row.source == "log_feedback"


def test_it_accepts_the_extended_seed_fields(api: ApiClient) -> None:
    body = {**SEED_BODY, "input_data": {"x": 1}, "prediction": 1, "actual_value": 1, "confidence_score": 0.9}

    api.post_json(URL, {**body, "model": "scorer", "event_id": "e-1"})

    row = Prediction.objects.get()
    assert (row.confidence, row.is_correct, row.registered_model.name, row.event_id) == (0.9, True, "scorer", "e-1")


@pytest.mark.parametrize("missing", ["input_data", "prediction", "model_version", "latency"])
def test_it_names_a_missing_field(api: ApiClient, missing: str) -> None:
    body = {key: value for key, value in SEED_BODY.items() if key != missing}

    response = api.post_json(URL, body)

    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == missing
    assert Prediction.objects.count() == 0


def test_it_refuses_a_negative_latency(api: ApiClient) -> None:
    response = api.post_json(URL, {**SEED_BODY, "latency": -1})

    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "latency"
