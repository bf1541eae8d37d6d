"""One prediction per request is answered without DRF's dispatch, with the answers DRF gives; every other request to
the endpoint still goes through DRF."""

import json
from typing import Any

import pytest
from prometheus_client import REGISTRY
from rest_framework.views import APIView

from collector.models import Prediction
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db
URL = "/api/v1/predictions/"


@pytest.fixture
def drf_dispatches(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths of the requests that reached DRF's dispatch."""
    reached: list[str] = []
    initial = APIView.initial

    def counting_initial(self: APIView, request: Any, *args: Any, **kwargs: Any) -> None:
        reached.append(request.method)
        initial(self, request, *args, **kwargs)

    monkeypatch.setattr(APIView, "initial", counting_initial)
    return reached


def post(client: ApiClient, body: Any, **headers: Any) -> Any:
    return client.post(URL, data=json.dumps(body), content_type="application/json", **headers)


def test_a_single_prediction_skips_drf_and_is_stored(api: ApiClient, drf_dispatches: list[str]) -> None:
    response = post(api, prediction_body(event_id="evt-1", latency_ms=3.5, confidence=0.9, attributes={"r": "eu"}))

    assert drf_dispatches == []
    assert response.status_code == 201
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"id": Prediction.objects.get().pk, "event_id": "evt-1", "status": "created"}
    row = Prediction.objects.get()
    assert (row.latency_ms, row.confidence, row.attributes, row.source) == (3.5, 0.9, {"r": "eu"}, "api")


def test_a_retry_answers_200_with_the_stored_id(api: ApiClient, drf_dispatches: list[str]) -> None:
    first = post(api, prediction_body(event_id="evt-1")).json()

    retry = post(api, prediction_body(event_id="evt-1"))

    assert drf_dispatches == []
    assert retry.status_code == 200
    assert retry.json() == {"id": first["id"], "event_id": "evt-1", "status": "duplicate"}


def test_a_reused_event_id_is_the_api_conflict(api: ApiClient, drf_dispatches: list[str]) -> None:
    post(api, prediction_body(event_id="evt-1"))

    response = post(api, prediction_body(event_id="evt-1", prediction=0))

    assert drf_dispatches == []
    assert response.status_code == 409
    error = response.json()["error"]
    assert (error["code"], [f["field"] for f in error["fields"]]) == ("conflict", ["event_id"])


def test_a_key_scoped_to_another_model_is_refused(drf_dispatches: list[str]) -> None:
    from collector.services import api_key_create

    _, raw_key = api_key_create(name="scoped", model_names=["fraud"])

    response = post(ApiClient(raw_key), prediction_body(model="churn"))

    assert response.status_code == 403
    assert response.json()["error"]["fields"] == [
        {"field": "model", "message": "this API key may not register the new model 'churn'"}
    ]
    assert Prediction.objects.count() == 0


def test_over_the_write_rate_it_answers_429_with_retry_after(api: ApiClient, settings: Any, drf_dispatches) -> None:
    settings.FEEDBACKHUB_WRITE_RATE = "1/day"
    assert post(api, prediction_body()).status_code == 201

    response = post(api, prediction_body())

    assert drf_dispatches == []
    assert response.status_code == 429
    assert int(response["Retry-After"]) > 0
    error = response.json()["error"]
    assert error["code"] == "throttled" and "FEEDBACKHUB_WRITE_RATE" in error["message"]
    assert Prediction.objects.count() == 1


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ([prediction_body(), prediction_body(prediction=0)], {}, 201),  # a batch
        (prediction_body(confidence=2), {}, 400),  # invalid: the serializer names the problem
        (prediction_body(timestamp="2026-01-01T00:00:00Z"), {}, 201),  # valid, but not the common shape
        (prediction_body(), {"HTTP_ACCEPT": "text/html"}, 406),
        (prediction_body(), {"HTTP_AUTHORIZATION": "Bearer fbh_nothing_here"}, 401),
        (prediction_body(), {"HTTP_AUTHORIZATION": ""}, 401),
    ],
)
def test_anything_else_goes_through_drf(api: ApiClient, drf_dispatches, body, headers, status) -> None:
    response = post(api, body, **headers)

    assert drf_dispatches == ["POST"]
    assert response.status_code == status


def test_a_body_in_another_charset_goes_through_drf(api: ApiClient, drf_dispatches: list[str]) -> None:
    body = json.dumps(prediction_body(input="café")).encode("latin-1")

    response = api.post(URL, data=body, content_type="application/json; charset=latin-1")

    assert drf_dispatches == ["POST"]
    assert response.status_code == 201
    assert Prediction.objects.get().input == "café"


def test_reads_of_the_endpoint_go_through_drf(api: ApiClient, drf_dispatches: list[str]) -> None:
    post(api, prediction_body())

    response = api.get(URL)

    assert drf_dispatches == ["GET"]
    assert len(response.json()["results"]) == 1


def test_a_query_string_goes_through_drf(api: ApiClient, drf_dispatches: list[str]) -> None:
    response = api.post(f"{URL}?format=csv", data=json.dumps(prediction_body()), content_type="application/json")

    assert drf_dispatches == ["POST"]
    assert response.status_code == 404  # DRF's answer to a format it does not render; nothing is written
    assert Prediction.objects.count() == 0


@pytest.mark.parametrize("header", ["Bearer\xa0{key}", "Bearer {key}\xa0", "bearer  {key}"])
def test_the_authorization_header_is_read_as_drf_reads_it(api_key, drf_dispatches, header: str) -> None:
    response = post(ApiClient(), prediction_body(), HTTP_AUTHORIZATION=header.format(key=api_key[1]))

    if "\xa0" in header:  # not ASCII whitespace: DRF finds no valid key, and so does this path
        assert (drf_dispatches, response.status_code, Prediction.objects.count()) == (["POST"], 401, 0)
    else:
        assert (drf_dispatches, response.status_code) == ([], 201)


def test_its_answers_are_written_as_drf_writes_them(api: ApiClient) -> None:
    post(api, prediction_body(event_id="é-1"))

    created = post(api, prediction_body(event_id="é-2"))
    conflict = post(api, prediction_body(event_id="é-1", prediction=0))

    assert created.content == f'{{"id":{created.json()["id"]},"event_id":"é-2","status":"created"}}'.encode()
    assert "'é-1' was already used".encode() in conflict.content  # UTF-8, not \\u00e9 escapes
    # Its length, as CommonMiddleware (which these answers skip) would give it: a keep-alive server need not chunk.
    assert [answer["Content-Length"] for answer in (created, conflict)] == [
        str(len(created.content)),
        str(len(conflict.content)),
    ]


def test_its_answers_are_counted_under_the_endpoints_view(api: ApiClient, drf_dispatches: list[str]) -> None:
    by_view = {"view": "api:predictions", "method": "POST"}
    samples = {
        "django_http_requests_total_by_view_transport_method_total": {**by_view, "transport": "http"},
        "django_http_responses_total_by_status_view_method_total": {**by_view, "status": "201"},
        "django_http_requests_latency_seconds_by_view_method_count": by_view,
    }
    before = {name: REGISTRY.get_sample_value(name, labels) or 0 for name, labels in samples.items()}

    assert post(api, prediction_body()).status_code == 201

    assert drf_dispatches == []
    assert {name: REGISTRY.get_sample_value(name, labels) - before[name] for name, labels in samples.items()} == {
        name: 1 for name in samples
    }
