"""The fast validator of prediction bodies agrees with PredictionInSerializer: whatever it accepts, the serializer
accepts with the same validated data; whatever the serializer refuses, it leaves to the serializer."""

import itertools
import random
from typing import Any

import pytest

from loop.api.serializers import PredictionInSerializer, prediction_in_fast
from tests.conftest import ApiClient, prediction_body

ABSENT = object()
CANDIDATES: dict[str, list[Any]] = {
    "model": [ABSENT, "churn", "", " churn", "churn ", "m" * 100, "m" * 101, None, 7, 1.5, True, [], {}, "é-model"],
    "version": ["v1", "v" * 100, ABSENT, "", "  ", "v1\n", "v" * 100, "v" * 101, None, 2, False, ["v1"]],
    "input": [{"tenure": 3}, [1, 2], ABSENT, None, "text", 0, False, {}, [], {"deep": {"er": [1, {"x": None}]}}],
    "prediction": [1, 0, ABSENT, None, "yes", 0.25, [0.1, 0.9], {"label": "a"}, True],
    "actual": [ABSENT, None, 1, "no", [1], {"a": 1}, False],
    "latency_ms": [ABSENT, None, 0, 12, 12.5, -1, -0.0, 86_400_000, 86_400_001, 1e300, 2**70, "12", True, [1]],
    "confidence": [ABSENT, 0.5, None, 0, 1, 1.0000001, -0.1, "0.5", False, 2**64],
    "interaction_id": [ABSENT, "", "chat-1", " chat-1", "   ", "i" * 255, "i" * 256, None, 5, {}],
    "event_id": [ABSENT, "e-1", "", " e-1", "e" * 128, "e" * 129, None, 12, 1.25, ["e"]],
    "attributes": [ABSENT, {}, {"region": "eu"}, None, [], "x", {"n": {"m": 1}}],
    "timestamp": [ABSENT, None, "2026-01-02T03:04:05Z", "not a date", 5],
    "task_type": [ABSENT, "binary", "", "regression", "multiclass", "other", None, 1],
    "unknown_key": [ABSENT, "ignored"],
}


def body_from(choice: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in choice.items() if value is not ABSENT}


def assert_agrees(body: Any) -> bool:
    """True when the fast path took the body."""
    fast = prediction_in_fast(body)
    serializer = PredictionInSerializer(data=body)
    valid = serializer.is_valid()
    if fast is not None:
        assert valid, (body, serializer.errors)
        assert fast == dict(serializer.validated_data), body
        assert {k: type(v) for k, v in fast.items()} == {k: type(v) for k, v in serializer.validated_data.items()}
    return fast is not None


def test_each_field_alone_takes_every_candidate_value() -> None:
    base = prediction_body(latency_ms=12.5, confidence=0.8, event_id="e-1", attributes={"region": "eu"})
    for name, values in CANDIDATES.items():
        for value in values:
            body = {**base, name: value} if value is not ABSENT else {k: v for k, v in base.items() if k != name}
            assert_agrees(body)


def test_random_combinations_agree_with_the_serializer() -> None:
    rng = random.Random(8)
    names = list(CANDIDATES)
    taken = 0
    for _ in range(4000):
        # Mostly the first two values of each field (which the fast path takes), so that both paths are exercised.
        choice = {name: rng.choice(CANDIDATES[name][:2] if rng.random() < 0.85 else CANDIDATES[name]) for name in names}
        taken += assert_agrees(body_from(choice))
    assert 200 < taken < 3800  # the fast path is exercised, not only the fallback


def test_the_common_valid_shapes_take_the_fast_path() -> None:
    for latency, confidence, event_id in itertools.product([None, 3, 4.5], [None, 0, 0.7], ["e", ABSENT]):
        body = body_from({**prediction_body(), "latency_ms": latency, "confidence": confidence, "event_id": event_id})
        assert assert_agrees(body), body


@pytest.mark.parametrize("body", [[], "text", None, 3, [prediction_body()]])
def test_anything_but_an_object_is_left_to_the_serializer(body: Any) -> None:
    assert prediction_in_fast(body) is None


@pytest.mark.django_db
def test_a_batch_with_one_bad_item_gets_the_serializers_error_naming_it(api: ApiClient) -> None:
    items = [prediction_body(event_id=f"e-{n}") for n in range(5)]
    items[3]["confidence"] = 1.5

    response = api.post_json("/api/v1/predictions/", items)

    assert response.status_code == 400
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["[3].confidence"]
