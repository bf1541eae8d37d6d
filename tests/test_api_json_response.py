"""The API's answers made without DRF carry the bytes and headers JsonResponse gave them, whichever encoder writes."""

import decimal
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from django.http import JsonResponse
from django.utils.translation import gettext_lazy

from feedbackhub.api_errors import api_json_response

BODIES: list[dict[str, Any]] = [
    {"id": 123456, "event_id": "abc-123", "status": "created"},
    {"error": {"status": 400, "code": "invalid", "message": "café ☃ \u2028 \x01", "fields": []}},
    {"moment": datetime(2026, 12, 6, 4, 5, 6, 123456, tzinfo=UTC), "id": uuid.UUID(int=5), "n": None, "f": 0.1},
    {"amount": decimal.Decimal("1.50"), "lazy": gettext_lazy("Not found."), "flags": [True, False]},
    {"beyond_64_bits": 2**70, "negative": -(2**70)},  # orjson refuses these; the standard library writes them
]


@pytest.mark.parametrize("body", BODIES)
def test_it_writes_what_jsonresponse_wrote(body: dict[str, Any]) -> None:
    ours = api_json_response(body, status=201)
    theirs = JsonResponse(body, status=201, json_dumps_params={"ensure_ascii": False, "separators": (",", ":")})

    assert ours.content == theirs.content
    assert (ours.status_code, ours["Content-Type"], ours.charset) == (201, "application/json", "utf-8")
