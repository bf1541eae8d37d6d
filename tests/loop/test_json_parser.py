"""The API's JSON parser reads every body exactly as json.loads does, whether orjson or json does the reading."""

import io
import json
from typing import Any

import pytest
from rest_framework.exceptions import ParseError

from collector.payloads import storable_problem
from feedbackhub.errors import InvalidInput
from loop.api.parsers import BoundedJSONParser

BODIES = [
    b'{"a": 1, "b": [1.5, -0.0, 1e-7, 2E10], "c": null, "d": true, "e": "\\u00e9\\ud83d\\ude00"}',
    b"[" + b",".join([b'{"n": %d}' % n for n in range(50)]) + b"]",
    b'{"big": 123456789012345678901234567890, "edge": 9223372036854775807, "neg": -9223372036854775808}',
    b'{"float": 1.7976931348623157e308, "tiny": 5e-324, "precise": 0.1}',
    b'{"dup": 1, "dup": 2}',
    '{"text": "caf\u00e9 \u2603"}'.encode(),
    b'  {"spaced" :\t[ 1 ,2 ]\n}  ',
]
REFUSED = [b"{", b'{"a": NaN}', b"[Infinity]", b'{"a": "\x01"}', b"\xef\xbb\xbf{}", b"[1, 2"]


def parse(raw: bytes) -> Any:
    return BoundedJSONParser().parse(io.BytesIO(raw), "application/json", {})


@pytest.mark.parametrize("raw", BODIES)
def test_it_reads_what_json_reads_with_the_same_types(raw: bytes) -> None:
    parsed = parse(raw)
    expected = json.loads(raw)
    assert parsed == expected
    assert json.dumps(parsed) == json.dumps(expected)


@pytest.mark.parametrize("raw", REFUSED)
def test_it_refuses_what_it_refused_before(raw: bytes) -> None:
    with pytest.raises(ParseError):
        parse(raw)


def test_a_number_past_the_float_range_is_still_read_as_json_reads_it() -> None:
    assert parse(b'{"a": 1e400}') == json.loads(b'{"a": 1e400}')


def test_an_unpaired_surrogate_is_named_by_its_path() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(b'{"input": "\\ud800"}')
    assert caught.value.problems[0].field == "input"


def test_a_nul_character_anywhere_is_named_by_its_path() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse(b'[{"ok": 1}, {"input": {"name": "a\\u0000b"}}]')
    assert caught.value.problems[0].field == "[1].input.name"


def nested(depth: int, *, empty: bool) -> bytes:
    inner = b"[]" if empty else b"1"
    for level in range(depth):
        inner = b'{"k": ' + inner + b"}" if level % 2 else b"[" + inner + b', "]]{{"]'
    return inner


@pytest.mark.parametrize("depth", range(29, 37))
@pytest.mark.parametrize("empty", [True, False])
def test_the_nesting_limit_is_where_it_was(depth: int, empty: bool) -> None:
    raw = nested(depth, empty=empty)
    expected = storable_problem(json.loads(raw))
    if expected is None:
        assert parse(raw) == json.loads(raw)
    else:
        with pytest.raises(InvalidInput) as caught:
            parse(raw)
        assert (caught.value.problems[0].field, caught.value.problems[0].message) == expected
