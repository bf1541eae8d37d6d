import json
import re
from itertools import accumulate
from typing import Any

import orjson
from django.conf import settings
from rest_framework.exceptions import APIException, ParseError, UnsupportedMediaType
from rest_framework.parsers import JSONParser

from collector.payloads import MAX_DEPTH, storable_problem
from feedbackhub.errors import FieldProblem, InvalidInput

# orjson reads integers past 64 bits as floats where json keeps them exact; such bodies take the slow path.
_LONG_INTEGER = re.compile(rb"\d{19}")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKETS = bytes(range(256)).translate(None, b"[]{}")


class RequestTooLarge(APIException):
    status_code = 413
    default_code = "too_large"
    default_detail = "The request body is too large."


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


class BoundedJSONParser(JSONParser):
    """JSON with a size limit, strict numbers (no NaN/Infinity) and only values every database can store."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: dict | None = None) -> Any:
        limit = settings.FEEDBACKHUB_MAX_BODY_BYTES
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH", "") if request is not None else ""
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            raise RequestTooLarge(f"The request body is {int(declared)} bytes; the limit is {limit}.")
        raw = stream.read(limit + 1)
        if len(raw) > limit:
            raise RequestTooLarge(f"The request body is over the limit of {limit} bytes.")
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        data = fast_loads(raw) if encoding.lower() in ("utf-8", "utf8") else SLOW
        if data is not SLOW and storable_as_read(raw):
            return data
        if data is SLOW:
            data = _loads(raw, encoding)
        problem = storable_problem(data)
        if problem:
            raise InvalidInput(f"{problem[0]}: {problem[1]}", [FieldProblem(*problem)])
        return data


SLOW = object()


def fast_loads(raw: bytes) -> Any:
    """The body as json.loads would read it, by orjson (several times faster); SLOW for anything orjson might
    read differently or refuses, so that json.loads gives the answer and its exact error message."""
    if _LONG_INTEGER.search(raw):
        return SLOW
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return SLOW


def storable_as_read(raw: bytes) -> bool:
    """True when a body orjson read needs no storable_problem walk (which costs more than the parse): orjson
    refuses unpaired surrogates, a NUL can only come from a \\u0000 escape, and the nesting, counted on the bytes
    with the strings taken out, is within MAX_DEPTH. False means "walk it", not "refuse it"."""
    if b"\\u0000" in raw:
        return False
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if len(brackets) <= 2 * MAX_DEPTH:
        return True
    return max(accumulate(1 if bracket in b"[{" else -1 for bracket in brackets)) <= MAX_DEPTH


def _loads(raw: bytes, encoding: str) -> Any:
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise UnsupportedMediaType(f"application/json; charset={encoding}") from None
    except UnicodeDecodeError as error:
        raise ParseError(f"JSON parse error - the body is not valid {encoding}: {error.reason}") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ParseError("JSON parse error - the body is nested too deeply.") from None
    except ValueError as error:
        raise ParseError(f"JSON parse error - {error}") from None
