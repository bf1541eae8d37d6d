import logging
from collections.abc import Callable

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse

from feedbackhub.api_errors import api_json_response, database_unavailable, error_body

logger = logging.getLogger(__name__)


class BodySizeLimitMiddleware:
    """Refuse a declared body over FEEDBACKHUB_MAX_BODY_BYTES with a JSON 413 before anything reads it, and a URL
    holding a NUL character (no database column can store one) with a JSON 400.

    It must come before django-prometheus' middleware, which reads request.body to measure it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
            message = "The URL contains a NUL character (%00), which no field can hold."
            return api_json_response(error_body(400, "invalid", message), status=400)
        declared = request.META.get("CONTENT_LENGTH", "")
        limit = settings.FEEDBACKHUB_MAX_BODY_BYTES
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            message = f"The request body is {int(declared)} bytes; the limit is {limit} (FEEDBACKHUB_MAX_BODY_BYTES)."
            return api_json_response(error_body(413, "too_large", message), status=413)
        return self.get_response(request)


class DatabaseUnavailableMiddleware:
    """Answer 503 with Retry-After, not a 500, when the database cannot be reached (down, refusing connections,
    a file that cannot be opened, a lock held past the busy timeout). The write in progress was inside a
    transaction, so nothing of it is stored; the next request connects afresh.

    Last in MIDDLEWARE, so its process_exception sees a view's exception first (DRF re-raises what its handler
    does not know)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return database_unavailable_answer(request, exception)


def database_unavailable_answer(request: HttpRequest, exception: Exception) -> HttpResponse | None:
    """The 503 for a database error that says the database cannot be reached (logged); None for any other error."""
    if not isinstance(exception, OperationalError | InterfaceError):
        return None
    logger.warning("The database is unavailable (%s %s): %s", request.method, request.path, exception)
    return database_unavailable(request)
