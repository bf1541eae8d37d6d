import pytest

from collector.models import OutcomeRevision, PendingOutcome, Prediction, RegisteredModel
from collector.services import api_key_create
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db
OUTCOMES = "/api/v1/outcomes/"


@pytest.fixture
def prediction_id(api: ApiClient) -> int:
    return api.post_json("/api/v1/predictions/", prediction_body(event_id="evt-1", prediction=1)).json()["id"]


def test_an_outcome_attaches_to_a_prediction_by_id(api: ApiClient, prediction_id: int) -> None:
    response = api.post_json(f"/api/v1/predictions/{prediction_id}/outcome/", {"actual": 0})

    assert response.status_code == 200
    assert response.json() == {"prediction_id": prediction_id, "event_id": "evt-1", "status": "recorded"}
    row = Prediction.objects.get()
    assert (row.actual, row.actual_label, row.is_correct) == (0, "0", False)
    assert row.actual_recorded_at is not None


def test_an_outcome_attaches_by_event_id(api: ApiClient, prediction_id: int) -> None:
    response = api.post_json(OUTCOMES, {"model": "churn", "event_id": "evt-1", "actual": 1})

    assert response.status_code == 200
    assert response.json()["status"] == "recorded"
    assert Prediction.objects.get().is_correct is True


def test_a_changed_outcome_is_recorded_with_who_when_and_the_previous_value(api: ApiClient, prediction_id: int) -> None:
    api.post_json(OUTCOMES, {"prediction_id": prediction_id, "actual": 1})

    response = api.post_json(OUTCOMES, {"prediction_id": prediction_id, "actual": 0})

    assert response.json()["status"] == "changed"
    assert Prediction.objects.get().is_correct is False
    latest = OutcomeRevision.objects.order_by("-id").first()
    assert (latest.previous_actual, latest.actual, latest.actor) == (1, 0, "key:test-service")
    assert OutcomeRevision.objects.count() == 2


def test_sending_the_same_outcome_again_changes_nothing(api: ApiClient, prediction_id: int) -> None:
    api.post_json(OUTCOMES, {"prediction_id": prediction_id, "actual": 1})

    response = api.post_json(OUTCOMES, {"prediction_id": prediction_id, "actual": True})

    assert response.json()["status"] == "unchanged"
    assert OutcomeRevision.objects.count() == 1


def test_an_outcome_that_arrives_before_its_prediction_waits_for_it(api: ApiClient) -> None:
    api.post_json("/api/v1/predictions/", prediction_body())  # registers the model
    response = api.post_json(OUTCOMES, {"model": "churn", "event_id": "late", "actual": 1})
    assert response.status_code == 202
    assert response.json() == {"prediction_id": None, "event_id": "late", "status": "pending"}

    api.post_json("/api/v1/predictions/", prediction_body(event_id="late", prediction=0))

    row = Prediction.objects.get(event_id="late")
    assert (row.actual, row.is_correct) == (1, False)
    assert PendingOutcome.objects.count() == 0


def test_a_batch_of_outcomes_is_all_or_nothing(api: ApiClient, prediction_id: int) -> None:
    response = api.post_json(
        OUTCOMES, [{"prediction_id": prediction_id, "actual": 1}, {"prediction_id": 999, "actual": 1}]
    )

    assert response.status_code == 404
    assert response.json()["error"]["fields"] == [
        {"field": "[1].prediction_id", "message": "no prediction with id 999"}
    ]
    assert Prediction.objects.get().actual is None


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"actual": 1}, 400, "prediction_id"),
        ({"prediction_id": 1, "event_id": "evt-1", "actual": 1}, 400, "prediction_id"),
        ({"event_id": "evt-1"}, 400, "actual"),
        ({"model": "churn", "event_id": "evt-1", "actual": "maybe"}, 400, "actual"),
        ({"prediction_id": "1", "actual": 1}, 400, "prediction_id"),
        ({"prediction_id": 2**70, "actual": 1}, 400, "prediction_id"),
        ({"model": "bad name!", "event_id": "evt-1", "actual": 1}, 400, "model"),
        ({"prediction_id": 424242, "actual": 1}, 404, "prediction_id"),
    ],
)
def test_it_rejects_bad_outcomes(api: ApiClient, prediction_id: int, body: dict, status: int, field: str) -> None:
    response = api.post_json(OUTCOMES, body)

    assert response.status_code == status, response.content
    assert field in [problem["field"] for problem in response.json()["error"]["fields"]]
    assert Prediction.objects.get().actual is None
    assert PendingOutcome.objects.count() == 0
    assert not RegisteredModel.objects.filter(name="bad name!").exists()


def test_an_unknown_id_in_the_path_is_a_404(api: ApiClient) -> None:
    assert api.post_json("/api/v1/predictions/123/outcome/", {"actual": 1}).status_code == 404
    assert api.post_json(f"/api/v1/predictions/{2**70}/outcome/", {"actual": 1}).status_code == 404


def test_a_scoped_key_may_not_set_outcomes_of_another_models_predictions(prediction_id: int) -> None:
    _, raw = api_key_create(name="fraud-only", model_names=["fraud"])

    response = ApiClient(raw).post_json(OUTCOMES, {"prediction_id": prediction_id, "actual": 1})

    assert response.status_code == 404  # another model's prediction is not named, not even its model
    assert Prediction.objects.get().actual is None


def test_a_regression_outcome_records_the_error(api: ApiClient) -> None:
    body = prediction_body(model="price", prediction=100.0, task_type="regression", event_id="p")
    api.post_json("/api/v1/predictions/", body)

    api.post_json(OUTCOMES, {"model": "price", "event_id": "p", "actual": 90})

    assert Prediction.objects.get().error == -10.0


def test_an_outcome_for_a_model_never_seen_registers_it_and_waits(api: ApiClient) -> None:
    response = api.post_json(OUTCOMES, {"model": "brand-new", "event_id": "e1", "actual": 1})

    assert response.status_code == 202
    assert RegisteredModel.objects.get(name="brand-new").task_type == "binary"
    api.post_json("/api/v1/predictions/", prediction_body(model="brand-new", event_id="e1", prediction=1))
    assert Prediction.objects.get(event_id="e1").is_correct is True
