"""Hourly rollups for the dashboard: kept at write time in the write's transaction, equal to a recount."""

from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from collector.counters import latency_bucket
from collector.models import LATENCY_BUCKETS_MS, ConfusionHour, FeedbackHour, LatencyHour, OutcomeHour, PredictionHour
from tests.collector.test_quality_counters import random_traffic
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("latency", "bucket"),
    [(0.0, 0), (1.0, 0), (1.01, 1), (50.0, 5), (60_000.0, len(LATENCY_BUCKETS_MS) - 1), (1e9, len(LATENCY_BUCKETS_MS))],
)
def test_a_latency_falls_in_the_first_bucket_whose_bound_holds_it(latency: float, bucket: int) -> None:
    assert latency_bucket(latency) == bucket


def test_predictions_count_in_their_utc_hour_with_their_latency(api: ApiClient) -> None:
    bodies = [
        prediction_body(event_id="a", timestamp="2026-11-30T10:59:59+00:00", latency_ms=3.0),
        prediction_body(event_id="b", timestamp="2026-11-30T16:45:00+05:30", latency_ms=250.0),  # 11:15 UTC
        prediction_body(event_id="c", timestamp="2026-11-30T11:30:00Z"),
    ]
    assert api.post_json("/api/v1/predictions/", bodies).status_code == 201
    assert api.post_json("/api/v1/predictions/", bodies).status_code in (200, 201)  # a retry counts nothing

    hours = sorted(PredictionHour.objects.values_list("hour", "predictions", "latency_count", "latency_sum_ms"))
    assert hours == [
        (datetime(2026, 11, 30, 10, tzinfo=UTC), 1, 1, 3.0),
        (datetime(2026, 11, 30, 11, tzinfo=UTC), 2, 1, 250.0),
    ]
    assert sorted(LatencyHour.objects.values_list("hour__hour", "bucket", "count")) == [(10, 2, 1), (11, 8, 1)]


def test_feedback_counts_per_hour_kind_and_rating(api: ApiClient) -> None:
    assert api.post_json("/api/v1/predictions/", prediction_body(event_id="p")).status_code == 201
    items = [
        {"model": "churn", "prediction_event_id": "p", "kind": "rating", "value": 2, "timestamp": "2026-11-30T10:05Z"},
        {"model": "churn", "prediction_event_id": "p", "kind": "rating", "value": 2, "timestamp": "2026-11-30T10:06Z"},
        {"model": "churn", "prediction_event_id": "p", "kind": "thumbs_down", "timestamp": "2026-11-30T10:07Z"},
    ]
    assert api.post_json("/api/v1/feedback/", items).status_code == 201

    assert sorted(FeedbackHour.objects.values_list("hour__hour", "kind", "rating", "count")) == [
        (10, "rating", 2, 2),
        (10, "thumbs_down", 0, 1),
    ]


def rollup_state() -> dict[str, list]:
    def rows(model: type, *fields: str) -> list:
        return sorted(
            tuple(round(value, 6) if isinstance(value, float) else value for value in row)
            for row in model.objects.values_list("model_version_id", "hour", *fields)
            if any(row[2:])
        )

    return {
        "predictions": rows(PredictionHour, "predictions", "latency_count", "latency_sum_ms"),
        "latency": rows(LatencyHour, "bucket", "count"),
        "outcomes": rows(OutcomeHour, "outcomes", "correct", "abs_error_sum", "squared_error_sum"),
        "confusion": [row for row in rows(ConfusionHour, "actual_label", "predicted_label", "count") if row[-1]],
        "feedback": sorted(FeedbackHour.objects.values_list("registered_model_id", "hour", "kind", "rating", "count")),
    }


def test_rebuilding_gives_the_rollups_kept_at_write_time(api: ApiClient) -> None:
    random_traffic(api, "churn", "binary", lambda rng: rng.choice([0, 1]), 120, seed=5)
    random_traffic(api, "price", "regression", lambda rng: round(rng.uniform(0, 10), 1), 120, seed=7)
    timed = [
        prediction_body(event_id=f"t{n}", timestamp=f"2026-11-{20 + n % 5}T{n % 24:02d}:10:00Z", latency_ms=n * 7.5)
        for n in range(60)
    ]
    assert api.post_json("/api/v1/predictions/", timed).status_code == 201
    kinds = ["rating", "thumbs_up", "thumbs_down", "comment", "rating"] * 8
    feedback = [
        {"model": "churn", "prediction_event_id": f"t{n}", "kind": kind, "timestamp": f"2026-11-2{n % 5}T0{n % 9}:00Z",
         "value": n % 5 + 1 if kind == "rating" else None, "comment": "slow" if kind == "comment" else ""}
        for n, kind in enumerate(kinds)
    ]  # fmt: skip
    assert api.post_json("/api/v1/feedback/", feedback).status_code == 201
    kept = rollup_state()
    assert all(kept.values())

    call_command("rebuild_quality_counters", stdout=None)

    assert rollup_state() == kept
