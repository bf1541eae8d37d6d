"""One prediction per request, answered before the browser middlewares, URL resolution and DRF's dispatch.

Services that log each prediction as it happens send one small `POST /api/v1/predictions/` per call. For that request
DRF's dispatch (the Request wrapper, content negotiation, authentication, permission and throttle classes, the
renderer) cost about as much CPU as the write itself, and the middlewares an API key never uses (sessions, CSRF,
users, messages, frame options) and the URL resolution about a sixth more. `SinglePredictionMiddleware` takes the
common shape of that request, a JSON object from a valid API key, and calls the same pieces DRF would: the key check,
the write-rate count, `prediction_in_fast`, the service, the one error shape, the 503 of an unreachable database.
The key check reads the key from the database only when the process has not authenticated it within the last minute
(`services.api_key_authenticate_for_write`); otherwise the write confirms it, and a key revoked or scoped since is
answered by DRF, which reads it again.
Everything else (a list, a body that needs the full serializer, a missing or bad key, another media type or Accept,
a query string such as DRF's `?format=`) goes on down the middlewares to the DRF view, which answers it as before.

It comes after PrometheusAfterMiddleware, so these answers are counted under the endpoint's view name like any other.
"""

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, ResolverMatch, resolve
from django_prometheus.middleware import Metrics
from rest_framework.authentication import get_authorization_header
from rest_framework.exceptions import Throttled

from collector import selectors, services
from collector.group_commit import prediction_record_grouped
from feedbackhub.api_errors import api_error_response, api_json_response
from feedbackhub.errors import DomainError
from feedbackhub.http_metrics import series
from feedbackhub.middleware import database_unavailable_answer
from loop.api.parsers import SLOW, fast_loads, storable_as_read
from loop.api.serializers import prediction_in_fast
from loop.api.throttling import count_write

# A single prediction is a few hundred bytes; bigger bodies are batches, which DRF's parser reads with its limits.
_LARGEST_SINGLE_BODY = 64 * 1024
_ACCEPTS_JSON = ("", "*/*", "application/json")


def recorded_body(recorded: services.Recorded) -> dict[str, Any]:
    return {"id": recorded.id, "event_id": recorded.event_id, "status": "created" if recorded.created else "duplicate"}


class SinglePredictionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        route = _predictions_route(request.path_info) if request.method == "POST" else None
        if route is not None:
            try:
                raw_key = _plain_request_key(request)
                answer = None if raw_key is None else _record_single_prediction(request, raw_key)
            except Exception as error:
                answer = database_unavailable_answer(request, error)
                if answer is None:
                    raise
            if answer is not None:
                _count_as_view(request, route)
                # As CommonMiddleware, which this answer skips, would: a keep-alive server need not chunk it.
                answer.headers["Content-Length"] = str(len(answer.content))
                return answer
        return self.get_response(request)


@lru_cache(maxsize=256)
def _predictions_route(path_info: str) -> ResolverMatch | None:
    """The URL match of the predictions endpoint when `path_info` is its path, else None (kept per path: the URLs
    do not change while the process runs)."""
    try:
        match = resolve(path_info)
    except Resolver404:
        return None
    return match if match.view_name == "api:predictions" else None


def _count_as_view(request: HttpRequest, route: ResolverMatch) -> None:
    """What the URL resolution and PrometheusAfterMiddleware.process_view would have left for a request answered here:
    the match that names the view in its response metrics, and its count by view."""
    request.resolver_match = route
    transport = "https" if request.is_secure() else "http"
    series(Metrics.get_instance().requests_by_view_transport_method, route.view_name, transport, request.method).inc()


def _plain_request_key(request: HttpRequest) -> str | None:
    """The raw API key of a request this path serves; None sends the request to DRF."""
    meta = request.META
    declared = meta.get("CONTENT_LENGTH", "")
    if (
        meta.get("QUERY_STRING")
        or request.content_type != "application/json"
        or request.content_params.get("charset", "utf-8").lower() not in ("utf-8", "utf8")
        or meta.get("HTTP_ACCEPT", "") not in _ACCEPTS_JSON
        or not (declared.isascii() and declared.isdigit() and 0 < int(declared) <= _LARGEST_SINGLE_BODY)
    ):
        return None
    parts = get_authorization_header(request).split()  # as DRF's authentication reads it: bytes, ASCII whitespace
    if len(parts) != 2 or parts[0].lower() != b"bearer" or not parts[1].isascii():
        return None
    return parts[1].decode("ascii")


def _record_single_prediction(request: HttpRequest, raw_key: str) -> HttpResponse | None:
    found = services.api_key_authenticate_for_write(raw_key)
    if found is None:
        return None
    api_key, read_now = found
    raw = request.body
    data = fast_loads(raw)
    if data is SLOW or type(data) is not dict or not storable_as_read(raw):
        return None
    item = prediction_in_fast(data)
    if item is None:
        return None
    actor = selectors.actor_for_api_key(api_key, read_now=read_now)
    try:
        count_write(api_key)
        recorded = prediction_record_grouped(item=services.PredictionIn(**item), actor=actor, parsed_storable=True)
    except services.ApiKeyNotConfirmed:
        services.api_key_forget(raw_key)
        return None  # DRF reads the key from the database, and answers
    except (DomainError, Throttled) as error:
        # A key taken from memory is confirmed by a write only: a key revoked meanwhile gets DRF's 401 instead.
        if actor.unconfirmed_key is not None and not services.api_key_confirmed(actor.unconfirmed_key):
            services.api_key_forget(raw_key)
            return None
        return api_error_response(error)
    return api_json_response(recorded_body(recorded), status=201 if recorded.created else 200)
