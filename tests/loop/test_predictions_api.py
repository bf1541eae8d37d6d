import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from collector.models import ModelVersion, Prediction, RegisteredModel, TaskType
from collector.services import Actor, PredictionIn, prediction_record_batch
from feedbackhub.errors import InvalidInput
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db
URL = "/api/v1/predictions/"


def database_snapshot() -> tuple[int, int, int]:
    return Prediction.objects.count(), RegisteredModel.objects.count(), ModelVersion.objects.count()


def test_it_records_one_prediction(api: ApiClient) -> None:
    response = api.post_json(
        URL,
        prediction_body(
            event_id="evt-1", latency_ms=12.5, confidence=0.8, interaction_id="chat-1", attributes={"a": 1}
        ),
    )

    assert response.status_code == 201
    assert response.json() == {"id": response.json()["id"], "event_id": "evt-1", "status": "created"}
    row = Prediction.objects.get()
    assert (row.registered_model.name, row.model_version.version) == ("churn", "v1")
    assert row.input == {"tenure": 3, "plan": "basic"}
    assert (row.prediction, row.predicted_label, row.actual, row.is_correct) == (1, "1", None, None)
    assert (row.latency_ms, row.confidence, row.interaction_id, row.attributes) == (12.5, 0.8, "chat-1", {"a": 1})
    assert row.source == "api"


def test_it_generates_an_event_id_when_the_client_sends_none(api: ApiClient) -> None:
    response = api.post_json(URL, prediction_body())

    assert response.status_code == 201
    assert len(response.json()["event_id"]) == 32
    assert Prediction.objects.get().event_id == response.json()["event_id"]


def test_it_registers_an_unknown_model_and_version_on_first_use(api: ApiClient) -> None:
    api.post_json(URL, prediction_body(model="sentiment", version="2024-06", prediction="positive-ish"))
    api.post_json(URL, prediction_body(model="price", version="1", prediction=12.75))
    api.post_json(URL, prediction_body(model="score", version="1", prediction=1.0))
    api.post_json(URL, prediction_body(model="topic", version="1", prediction="sports", task_type="generative"))

    task_types = dict(RegisteredModel.objects.values_list("name", "task_type"))
    assert task_types == {
        "sentiment": "multiclass", "price": "regression", "score": "regression", "topic": "generative",
    }  # fmt: skip
    assert ModelVersion.objects.filter(registered_model__name="sentiment", version="2024-06").exists()


def test_it_refuses_unknown_models_when_registration_is_required(api: ApiClient, settings) -> None:
    settings.FEEDBACKHUB_AUTO_REGISTER = False

    response = api.post_json(URL, prediction_body(model="new-model"))

    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "model"
    assert "register it in the admin first" in response.json()["error"]["message"]
    assert database_snapshot() == (0, 0, 0)


def test_it_uses_the_default_model_when_none_is_named(api: ApiClient, settings) -> None:
    settings.FEEDBACKHUB_DEFAULT_MODEL = "main"
    body = prediction_body()
    del body["model"]

    assert api.post_json(URL, body).status_code == 201
    assert Prediction.objects.get().registered_model.name == "main"


def test_a_retry_with_the_same_event_id_returns_the_original_id(api: ApiClient) -> None:
    first = api.post_json(URL, prediction_body(event_id="evt-1"))
    retry = api.post_json(URL, prediction_body(event_id="evt-1"))

    assert retry.status_code == 200
    assert retry.json() == {"id": first.json()["id"], "event_id": "evt-1", "status": "duplicate"}
    assert Prediction.objects.count() == 1


def test_a_batch_of_1000_posted_twice_leaves_exactly_1000_rows(api: ApiClient) -> None:
    batch = [prediction_body(event_id=f"evt-{n}", input={"n": n}, prediction=n % 2) for n in range(1000)]

    first = api.post_json(URL, batch)
    second = api.post_json(URL, batch)

    assert first.status_code == 201
    assert (first.json()["created"], first.json()["duplicates"]) == (1000, 0)
    assert second.status_code == 200
    assert (second.json()["created"], second.json()["duplicates"]) == (0, 1000)
    assert [r["id"] for r in first.json()["results"]] == [r["id"] for r in second.json()["results"]]
    assert Prediction.objects.count() == 1000


def test_the_same_event_id_with_another_body_is_a_conflict(api: ApiClient) -> None:
    api.post_json(URL, prediction_body(event_id="evt-1", prediction=1))

    response = api.post_json(URL, prediction_body(event_id="evt-1", prediction=0))

    assert response.status_code == 409
    assert response.json()["error"]["fields"] == [
        {"field": "event_id", "message": "'evt-1' was already used for another body"}
    ]
    assert Prediction.objects.get().prediction == 1


def test_event_ids_are_unique_per_model_not_globally(api: ApiClient) -> None:
    assert api.post_json(URL, prediction_body(model="a", event_id="evt-1")).status_code == 201
    assert api.post_json(URL, prediction_body(model="b", event_id="evt-1")).status_code == 201
    assert Prediction.objects.count() == 2


def test_a_repeat_inside_one_batch_is_stored_once(api: ApiClient) -> None:
    response = api.post_json(URL, [prediction_body(event_id="evt-1"), prediction_body(event_id="evt-1")])

    assert response.status_code == 201
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["created", "duplicate"]
    assert results[0]["id"] == results[1]["id"]
    assert Prediction.objects.count() == 1


def test_a_conflicting_repeat_inside_one_batch_rejects_the_batch(api: ApiClient) -> None:
    response = api.post_json(URL, [prediction_body(event_id="e"), prediction_body(event_id="e", prediction=0)])

    assert response.status_code == 409
    assert response.json()["error"]["fields"][0]["field"] == "[1].event_id"
    assert database_snapshot() == (0, 0, 0)


def test_a_batch_is_all_or_nothing_and_names_each_bad_item(api: ApiClient) -> None:
    batch = [prediction_body(event_id="ok"), prediction_body(confidence=1.5), prediction_body(latency_ms="fast")]

    response = api.post_json(URL, batch)

    assert response.status_code == 400
    fields = [problem["field"] for problem in response.json()["error"]["fields"]]
    assert fields == ["[1].confidence", "[2].latency_ms"]
    assert database_snapshot() == (0, 0, 0)


def test_a_label_that_does_not_fit_the_model_rejects_the_whole_batch(api: ApiClient) -> None:
    api.post_json(URL, prediction_body(event_id="first"))

    response = api.post_json(URL, [prediction_body(event_id="second"), prediction_body(prediction="cat")])

    assert response.status_code == 400
    problem = response.json()["error"]["fields"][0]
    assert problem["field"] == "[1].prediction"
    assert "registered as binary" in problem["message"]
    assert Prediction.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": "v1", "prediction": 1}, "input"),
        ({"version": "v1", "input": 1}, "prediction"),
        ({"input": 1, "prediction": 1}, "version"),
        (prediction_body(prediction=None), "prediction"),
        (prediction_body(confidence=1.5), "confidence"),
        (prediction_body(confidence=-0.1), "confidence"),
        (prediction_body(confidence="0.5"), "confidence"),
        (prediction_body(confidence=True), "confidence"),
        (prediction_body(latency_ms=-1), "latency_ms"),
        (prediction_body(attributes=[1, 2]), "attributes"),
        (prediction_body(timestamp="yesterday"), "timestamp"),
        (prediction_body(version=""), "version"),
        (prediction_body(version="v" * 101), "version"),
        (prediction_body(event_id="e" * 129), "event_id"),
        (prediction_body(task_type="clustering"), "task_type"),
        (prediction_body(model="bad name!"), "model"),
        (prediction_body(input="nul\u0000char"), "input"),
        (prediction_body(attributes={"deep": json.loads("[" * 40 + "]" * 40)}), "attributes.deep" + "[0]" * 31),
        ("a string", "body"),
        (42, "body"),
        ([], "body"),
        ([1, 2], "[0]"),
    ],
)
def test_it_rejects_bad_input_naming_the_field(api: ApiClient, body: object, field: str) -> None:
    response = api.post_json(URL, body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert field in [problem["field"] for problem in error["fields"]]
    assert field in error["message"]
    assert database_snapshot() == (0, 0, 0)


@pytest.mark.parametrize("raw", ["{bad json", '{"version": "v1", "input": NaN, "prediction": 1}', "[" * 100_000])
def test_it_rejects_malformed_json(api: ApiClient, raw: str) -> None:
    response = api.post(URL, data=raw, content_type="application/json")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "parse_error"
    assert Prediction.objects.count() == 0


def test_it_rejects_a_body_that_is_not_json(api: ApiClient) -> None:
    response = api.post(URL, data="input=1", content_type="application/x-www-form-urlencoded")

    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_it_rejects_a_10_megabyte_body(api: ApiClient) -> None:
    body = prediction_body(input="x" * (10 * 1024 * 1024))

    response = api.post_json(URL, body)

    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize(
    ("send", "status"),
    [
        (lambda api: api.post_json(URL, prediction_body(input="x" * (10 * 1024 * 1024))), 413),  # a middleware's
        (lambda api: api.get("/api/v1/no-such-endpoint/"), 404),  # Django's 404 handler
        (lambda api: api.post_json(URL, [prediction_body() for _ in range(1001)]), 413),  # DRF's handler
    ],
    ids=["body-too-large", "unknown-endpoint", "batch-too-large"],
)
def test_errors_answered_outside_drf_are_written_as_drf_writes_them(api: ApiClient, send, status: int) -> None:
    response = send(api)

    assert (response.status_code, response["Content-Type"]) == (status, "application/json")
    assert response.content == json.dumps(response.json(), ensure_ascii=False, separators=(",", ":")).encode()


def test_it_rejects_a_batch_over_the_item_limit(api: ApiClient, settings) -> None:
    settings.FEEDBACKHUB_MAX_BATCH = 10

    response = api.post_json(URL, [prediction_body() for _ in range(11)])

    assert response.status_code == 413
    assert "at most 10 items" in response.json()["error"]["message"]
    assert Prediction.objects.count() == 0


def test_it_derives_correctness_when_the_outcome_comes_with_the_prediction(api: ApiClient) -> None:
    api.post_json(URL, [prediction_body(event_id="right", actual=1), prediction_body(event_id="wrong", actual=0)])
    api.post_json(
        URL, prediction_body(model="price", version="1", prediction=10.0, actual=12.5, task_type="regression")
    )

    correctness = dict(Prediction.objects.filter(registered_model__name="churn").values_list("event_id", "is_correct"))
    assert correctness == {"right": True, "wrong": False}
    regression = Prediction.objects.get(registered_model__name="price")
    assert (regression.is_correct, regression.error) == (None, 2.5)


def test_binary_labels_are_read_the_same_in_any_spelling(api: ApiClient) -> None:
    RegisteredModel.objects.create(name="churn", task_type=TaskType.BINARY)
    api.post_json(URL, [prediction_body(prediction=True, actual="1"), prediction_body(prediction="no", actual=0.0)])

    assert list(Prediction.objects.values_list("predicted_label", "actual_label", "is_correct")) == [
        ("0", "0", True),
        ("1", "1", True),
    ]


def test_it_keeps_the_clients_timestamp(api: ApiClient) -> None:
    api.post_json(URL, prediction_body(timestamp="2026-01-02T03:04:05+02:00"))

    assert Prediction.objects.get().created_at == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)


@pytest.fixture
def stored_predictions(api: ApiClient) -> list[int]:
    now = datetime.now(UTC)
    bodies = [
        prediction_body(event_id="a", version="v1", actual=1, timestamp=(now - timedelta(hours=3)).isoformat()),
        prediction_body(event_id="b", version="v1", actual=0, timestamp=(now - timedelta(hours=2)).isoformat()),
        prediction_body(event_id="c", version="v2", timestamp=(now - timedelta(hours=1)).isoformat()),
        prediction_body(event_id="d", model="other", version="v1"),
    ]
    return [r["id"] for r in api.post_json(URL, bodies).json()["results"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("model=churn", ["c", "b", "a"]),
        ("model=churn&version=v1", ["b", "a"]),
        ("errors_only=true", ["b"]),
        ("labelled=true", ["b", "a"]),
        ("labelled=false", ["d", "c"]),
        ("event_id=c", ["c"]),
    ],
)
def test_it_lists_predictions_with_filters(api: ApiClient, stored_predictions: list[int], query: str, expected) -> None:
    response = api.get(f"{URL}?{query}")

    assert response.status_code == 200
    assert [row["event_id"] for row in response.json()["results"]] == expected


def test_a_label_approved_by_a_reviewer_counts_as_labelled_as_it_does_for_training(
    api: ApiClient, stored_predictions: list[int]
) -> None:
    Prediction.objects.filter(event_id="c").update(training_label=1)  # what an approved label correction sets

    assert [row["event_id"] for row in api.get(f"{URL}?labelled=true").json()["results"]] == ["c", "b", "a"]
    assert [row["event_id"] for row in api.get(f"{URL}?labelled=false").json()["results"]] == ["d"]
    response = api.get(f"{URL}export/?format=jsonl&model=churn&labelled=true")
    exported = b"".join(response.streaming_content).decode().splitlines()
    assert [(row["event_id"], row["training_label"]) for row in map(json.loads, exported)] == [
        ("a", None),
        ("b", None),
        ("c", 1),
    ]


def test_it_filters_by_time(api: ApiClient, stored_predictions: list[int]) -> None:
    since = (datetime.now(UTC) - timedelta(hours=2, minutes=30)).isoformat()
    until = (datetime.now(UTC) - timedelta(minutes=30)).isoformat()

    response = api.get(URL, {"model": "churn", "since": since, "until": until})

    assert [row["event_id"] for row in response.json()["results"]] == ["c", "b"]


def test_it_pages_with_a_cursor(api: ApiClient, stored_predictions: list[int]) -> None:
    first = api.get(URL, {"page_size": 3}).json()
    second = api.get(first["next"]).json()

    assert [row["event_id"] for row in first["results"]] == ["d", "c", "b"]
    assert [row["event_id"] for row in second["results"]] == ["a"]
    assert second["next"] is None


def test_it_rejects_a_bad_filter_value(api: ApiClient) -> None:
    response = api.get(URL, {"since": "last tuesday"})

    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == "since"


def test_it_shows_one_prediction(api: ApiClient, stored_predictions: list[int]) -> None:
    response = api.get(f"{URL}{stored_predictions[0]}/")

    assert response.status_code == 200
    assert response.json()["event_id"] == "a"
    assert response.json()["is_correct"] is True
    assert api.get(f"{URL}999999/").status_code == 404


def test_the_service_refuses_values_the_database_would_refuse_without_retrying() -> None:
    items = [
        PredictionIn(version="v1", input=None, prediction=1),
        PredictionIn(version="v1", input=1, prediction=1, confidence=1.7, event_id="e" * 200),
    ]
    with CaptureQueriesContext(connection) as queries, pytest.raises(InvalidInput) as raised:
        prediction_record_batch(items=items, actor=Actor(label="test"))

    fields = [problem.field for problem in raised.value.problems]
    assert fields == ["[0].input", "[1].event_id", "[1].confidence"]
    assert not [query for query in queries if "INSERT" in query["sql"]]
