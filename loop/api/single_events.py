"""One prediction per request, answered without DRF's per-request machinery.

Services that log each prediction as it happens send one small `POST /api/v1/predictions/` per call. For that request
DRF's dispatch (the Request wrapper, content negotiation, authentication, permission and throttle classes, the
renderer) cost about as much CPU as the write itself. `with_single_prediction_path` puts a plain Django view in front
of the DRF view that takes the common shape of that request, a JSON object from a valid API key, and calls the same
pieces DRF would: the key check, the write-rate count, `prediction_in_fast`, the service, the one error shape.
Everything else (a list, a body that needs the full serializer, a missing or bad key, another media type or Accept,
a query string such as DRF's `?format=`) goes to the DRF view untouched, which answers it exactly as before.
"""

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse
from rest_framework.authentication import get_authorization_header
from rest_framework.exceptions import Throttled

from collector import selectors, services
from collector.models import ApiKey
from feedbackhub.api_errors import api_error_response, api_json_response
from feedbackhub.errors import DomainError
from loop.api.parsers import SLOW, fast_loads, storable_as_read
from loop.api.serializers import prediction_in_fast
from loop.api.throttling import count_write

# A single prediction is a few hundred bytes; bigger bodies are batches, which DRF's parser reads with its limits.
_LARGEST_SINGLE_BODY = 64 * 1024
_ACCEPTS_JSON = ("", "*/*", "application/json")


def recorded_body(recorded: services.Recorded) -> dict[str, Any]:
    return {"id": recorded.id, "event_id": recorded.event_id, "status": "created" if recorded.created else "duplicate"}


def with_single_prediction_path(drf_view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """`drf_view` (the predictions endpoint) with single predictions answered first; its attributes (csrf_exempt,
    cls for the OpenAPI schema) are kept."""

    @wraps(drf_view)
    def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "POST":
            api_key = _plain_request_key(request)
            if api_key is not None:
                answer = _record_single_prediction(request, api_key)
                if answer is not None:
                    return answer
        return drf_view(request, *args, **kwargs)

    return view


def _plain_request_key(request: HttpRequest) -> ApiKey | None:
    """The valid API key of a request this path serves; None sends the request to DRF."""
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
    return services.api_key_authenticate(parts[1].decode("ascii"))


def _record_single_prediction(request: HttpRequest, api_key: ApiKey) -> HttpResponse | None:
    raw = request.body
    data = fast_loads(raw)
    if data is SLOW or type(data) is not dict or not storable_as_read(raw):
        return None
    item = prediction_in_fast(data)
    if item is None:
        return None
    try:
        count_write(api_key)
        recorded = services.prediction_record(
            item=services.PredictionIn(**item), actor=selectors.actor_for_api_key(api_key), parsed_storable=True
        )
    except (DomainError, Throttled) as error:
        return api_error_response(error)
    return api_json_response(recorded_body(recorded), status=201 if recorded.created else 200)
