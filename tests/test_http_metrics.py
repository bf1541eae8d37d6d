"""The request metrics of feedbackhub.http_metrics are django-prometheus' own: the same samples, with the same labels,
moved by the same requests."""

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from prometheus_client import REGISTRY

from collector.models import ApiKey
from feedbackhub import http_metrics
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db
# Timings differ from one run to the next, and so do the moments a series was created; counts do not.
TIMED = ("django_http_requests_latency_seconds_by_view_method", "django_http_requests_latency_including_middlewares")


def http_samples() -> dict[tuple[str, tuple], float]:
    samples = {}
    for metric in REGISTRY.collect():
        if not metric.name.startswith("django_http_"):
            continue
        for sample in metric.samples:
            if sample.name.endswith("_created") or (
                sample.name.startswith(TIMED) and sample.name.endswith(("_sum", "_bucket"))
            ):
                continue
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def moved_by(requests: Callable[[], None]) -> dict[tuple[str, tuple], float]:
    before = http_samples()
    requests()
    return {key: value - before.get(key, 0) for key, value in http_samples().items() if value != before.get(key, 0)}


def some_requests(api: ApiClient, run: str) -> Callable[[], None]:
    def send() -> None:
        body = prediction_body(event_id=f"{run}-1")
        api.post("/api/v1/predictions/", data=json.dumps(body), content_type="application/json")  # 201, fast path
        api.post("/api/v1/predictions/", data=json.dumps([body]), content_type="application/json")  # 200, DRF
        api.post("/api/v1/predictions/", data="{", content_type="application/json")  # 400
        Client().get("/no-such-page", HTTP_X_REQUESTED_WITH="XMLHttpRequest")  # 404, counted as ajax
        Client().get("/api/schema/")  # a larger body
        Client().generic("BREW", "/api/v1/predictions/")  # a method django-prometheus does not know

    return send


def test_the_same_samples_move_as_with_django_prometheus_middlewares(
    api_key: tuple[ApiKey, str], settings: Any
) -> None:
    api = ApiClient(api_key[1])
    ours = moved_by(some_requests(api, "run-a"))
    settings.MIDDLEWARE = [
        name.replace("feedbackhub.http_metrics.", "django_prometheus.middleware.") for name in settings.MIDDLEWARE
    ]
    theirs = moved_by(some_requests(api, "run-b"))

    assert ours == theirs
    assert ours[("django_http_requests_total_by_method_total", (("method", "<invalid method>"),))] == 1
    assert ours[("django_http_ajax_requests_total", ())] == 1
    assert ours[("django_http_responses_total_by_status_total", (("status", "201"),))] == 1


def test_a_streaming_response_is_counted_as_django_prometheus_counts_it(rf: Any) -> None:
    def stream(request: Any) -> StreamingHttpResponse:
        return StreamingHttpResponse(iter([b"a", b"b"]))

    after = http_metrics.PrometheusAfterMiddleware(stream)
    moved = moved_by(lambda: after(rf.get("/stream")))

    assert moved[("django_http_responses_streaming_total", ())] == 1
    assert not any(name.startswith("django_http_responses_body_total_bytes") for name, _ in moved)
