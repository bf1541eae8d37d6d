from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from feedbackhub.api_errors import error_body


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
            return JsonResponse(error_body(400, "invalid", message), status=400)
        declared = request.META.get("CONTENT_LENGTH", "")
        limit = settings.FEEDBACKHUB_MAX_BODY_BYTES
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            message = f"The request body is {int(declared)} bytes; the limit is {limit} (FEEDBACKHUB_MAX_BODY_BYTES)."
            return JsonResponse(error_body(413, "too_large", message), status=413)
        return self.get_response(request)
