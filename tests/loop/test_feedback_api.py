import pytest

from collector.models import Feedback
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db
URL = "/api/v1/feedback/"


@pytest.fixture
def prediction_id(api: ApiClient) -> int:
    body = prediction_body(event_id="evt-1", interaction_id="chat-7")
    return api.post_json("/api/v1/predictions/", body).json()["id"]


@pytest.mark.parametrize(
    ("body", "value"),
    [
        ({"kind": "thumbs_up"}, None),
        ({"kind": "thumbs_down", "comment": "wrong plan"}, None),
        ({"kind": "rating", "value": 1}, 1),
        ({"kind": "rating", "value": 5}, 5),
        ({"kind": "correction", "value": 0, "comment": "should be 0"}, 0),
        ({"kind": "comment", "comment": "slow answer"}, None),
    ],
)
def test_it_records_each_kind_of_feedback_on_a_prediction(api: ApiClient, prediction_id: int, body, value) -> None:
    response = api.post_json(URL, {**body, "prediction_id": prediction_id, "source": "web"})

    assert response.status_code == 201, response.content
    row = Feedback.objects.get()
    assert (row.kind, row.value, row.prediction_id, row.source) == (body["kind"], value, prediction_id, "web")
    assert row.interaction_id == "chat-7"
    assert row.registered_model.name == "churn"


def test_feedback_may_name_only_an_interaction(api: ApiClient, prediction_id: int) -> None:
    response = api.post_json(URL, {"kind": "thumbs_down", "interaction_id": "chat-9", "model": "churn"})

    assert response.status_code == 201
    assert Feedback.objects.get().prediction is None


def test_feedback_that_arrives_before_its_prediction_is_linked_when_it_arrives(api: ApiClient) -> None:
    api.post_json("/api/v1/predictions/", prediction_body())
    api.post_json(URL, {"kind": "thumbs_down", "model": "churn", "prediction_event_id": "later"})

    api.post_json("/api/v1/predictions/", prediction_body(event_id="later"))

    assert Feedback.objects.get().prediction.event_id == "later"


def test_a_feedback_retry_is_stored_once(api: ApiClient, prediction_id: int) -> None:
    body = {"kind": "thumbs_up", "prediction_id": prediction_id, "event_id": "fb-1"}

    first = api.post_json(URL, body)
    retry = api.post_json(URL, body)

    assert (first.status_code, retry.status_code) == (201, 200)
    assert retry.json()["status"] == "duplicate"
    assert Feedback.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        ({"kind": "rating", "value": 0}, 400, "value"),
        ({"kind": "rating", "value": 6}, 400, "value"),
        ({"kind": "rating", "value": 3.5}, 400, "value"),
        ({"kind": "rating", "value": True}, 400, "value"),
        ({"kind": "rating"}, 400, "value"),
        ({"kind": "correction"}, 400, "value"),
        ({"kind": "comment", "comment": "  "}, 400, "comment"),
        ({"kind": "thumbs_up", "value": 1}, 400, "value"),
        ({"kind": "smiley"}, 400, "kind"),
        ({"kind": "thumbs_up", "prediction_id": None, "interaction_id": ""}, 400, "prediction_id"),
        ({"kind": "thumbs_up", "prediction_id": 999_999}, 404, "prediction_id"),
        ({"kind": "thumbs_up", "prediction_id": True}, 400, "prediction_id"),
        ({"kind": "thumbs_up", "interaction_id": "x", "model": "unknown"}, 400, "model"),
        ({"kind": "thumbs_up", "prediction_id": "PID", "model": "other"}, 400, "model"),
    ],
)
def test_it_rejects_bad_feedback(api: ApiClient, prediction_id: int, body: dict, status: int, field: str) -> None:
    needs_the_fixture = "prediction_id" not in body and "interaction_id" not in body
    if body.get("prediction_id") == "PID" or needs_the_fixture:
        body = {**body, "prediction_id": prediction_id}

    response = api.post_json(URL, body)

    assert response.status_code == status, response.content
    assert field in [problem["field"] for problem in response.json()["error"]["fields"]]
    assert Feedback.objects.count() == 0


def test_it_lists_feedback_with_filters(api: ApiClient, prediction_id: int) -> None:
    api.post_json(
        URL,
        [
            {"kind": "thumbs_up", "prediction_id": prediction_id},
            {"kind": "rating", "value": 2, "prediction_id": prediction_id},
        ],
    )

    response = api.get(URL, {"kind": "rating"})

    assert [row["kind"] for row in response.json()["results"]] == ["rating"]
