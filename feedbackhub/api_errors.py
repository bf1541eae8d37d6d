"""One JSON error shape for the whole API:

{"error": {"status": 400, "code": "invalid", "message": "confidence: ...",
           "fields": [{"field": "confidence", "message": "Ensure this value is less than or equal to 1."}]}}
"""

import json
from collections.abc import Sequence
from typing import Any

import orjson
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse
from django.views import defaults
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from feedbackhub.errors import DomainError, FieldProblem, problems_summary

API_PATH_PREFIXES = ("/api/", "/log-feedback", "/feedback")
# What a client should wait before retrying when the database is unreachable.
RETRY_AFTER_SECONDS = 5


def error_body(status: int, code: str, message: str, problems: Sequence[FieldProblem] = ()) -> dict[str, Any]:
    return {
        "error": {
            "status": status,
            "code": code,
            "message": message,
            "fields": [{"field": problem.field, "message": problem.message} for problem in problems],
        }
    }


def flatten_detail(detail: Any, path: str = "") -> list[FieldProblem]:
    if isinstance(detail, dict):
        problems = []
        for key, value in detail.items():
            if key in ("non_field_errors", "detail"):
                problems += flatten_detail(value, path)
            elif isinstance(key, int) or str(key).isdigit():
                problems += flatten_detail(value, f"{path}[{key}]")
            else:
                problems += flatten_detail(value, f"{path}.{key}" if path else str(key))
        return problems
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):
            return [FieldProblem(path or "body", str(item)) for item in detail]
        problems = []
        for index, item in enumerate(detail):
            problems += flatten_detail(item, f"{path}[{index}]")
        return problems
    return [FieldProblem(path or "body", str(detail))]


def _code(exc: Exception) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "invalid"
    if isinstance(exc, exceptions.APIException):
        return str(exc.default_code)
    return "not_found" if getattr(exc, "status_code", 404) == 404 else "error"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        return Response(error_body(exc.status, exc.code, exc.message, exc.problems), status=exc.status)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        problems = flatten_detail(exc.detail)
        message = problems_summary(problems) if problems else "Invalid input."
    else:
        problems = []
        detail = response.data.get("detail", "") if isinstance(response.data, dict) else ""
        message = str(detail) or "Request failed."
    response.data = error_body(response.status_code, _code(exc), message, problems)
    return response


# Headers of an error answer that a view without DRF's handler must carry over (the 401's challenge, the 429's wait).
_ERROR_HEADERS = ("WWW-Authenticate", "Retry-After")


def api_json_response(body: dict[str, Any], *, status: int) -> HttpResponse:
    """`body` as DRF's JSON renderer writes it (compact, UTF-8), for a view that answers without DRF. Written by
    orjson, at a fraction of JsonResponse's cost on the single-prediction path; the standard library's encoder takes
    what orjson refuses (an integer beyond 64 bits)."""
    try:
        # Dates and times go to Django's encoder too: orjson writes UTC as +00:00, DRF and Django as Z.
        content = orjson.dumps(body, default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME)
    except orjson.JSONEncodeError:
        content = json.dumps(body, cls=DjangoJSONEncoder, ensure_ascii=False, separators=(",", ":")).encode()
    # The charset given, so that neither this nor the response metrics look it up in the settings.
    return HttpResponse(content, status=status, content_type="application/json", charset="utf-8")


_json_default = DjangoJSONEncoder().default  # dates, decimals, UUIDs and lazy translations, as JsonResponse writes them


def api_error_response(exc: Exception) -> HttpResponse | None:
    """The API's answer to `exc` as a plain Django response, for a view that runs without DRF; None where DRF's
    handler would re-raise (a database error, a bug)."""
    response = api_exception_handler(exc, {})
    if response is None:
        return None
    answer = api_json_response(response.data, status=response.status_code)
    for header in _ERROR_HEADERS:
        if header in response:
            answer[header] = response[header]
    return answer


def _is_api_path(request: HttpRequest) -> bool:
    return request.path.startswith(API_PATH_PREFIXES)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api_path(request):
        return api_json_response(error_body(404, "not_found", f"No endpoint at {request.path}."), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api_path(request):
        body = error_body(500, "server_error", "The server failed; the error is logged. Try again later.")
        return api_json_response(body, status=500)
    return defaults.server_error(request)


def database_unavailable(request: HttpRequest) -> HttpResponse:
    message = f"The database is unreachable; nothing was written. Try again in {RETRY_AFTER_SECONDS} seconds."
    if _is_api_path(request):
        response = api_json_response(error_body(503, "unavailable", message), status=503)
    else:
        response = HttpResponse(message, status=503, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
