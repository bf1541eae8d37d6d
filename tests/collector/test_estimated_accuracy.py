"""Expected accuracy from confidence while outcomes are missing, beside the realised accuracy once they arrive."""

import random
from io import StringIO

import pytest
from django.core.management import call_command

from collector.models import Prediction, VersionTally
from collector.selectors import quality_list
from tests.collector.test_drift_checks import labels, scrape
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db
CHURN = labels(model="churn", version="v1")


def traffic(api: ApiClient, count: int, seed: int) -> None:
    """Predictions with and without confidence; outcomes at once, later, and changed later."""
    rng = random.Random(seed)
    bodies = []
    for n in range(count):
        body = prediction_body(event_id=f"e{n}", prediction=rng.choice([0, 1]))
        if rng.random() < 0.8:
            body["confidence"] = round(rng.uniform(0.5, 1.0), 3)
        if rng.random() < 0.3:
            body["actual"] = rng.choice([0, 1])
        bodies.append(body)
    assert api.post_json("/api/v1/predictions/", bodies).status_code == 201
    later = [
        {"model": "churn", "event_id": f"e{n}", "actual": rng.choice([0, 1])} for n in rng.sample(range(count), 60)
    ]
    assert api.post_json("/api/v1/outcomes/", later).status_code == 200
    assert (
        api.post_json("/api/v1/outcomes/", [dict(item, actual=1 - item["actual"]) for item in later[:20]]).status_code
        == 200
    )


def test_estimated_accuracy_is_the_mean_confidence_of_the_predictions_still_waiting(api: ApiClient) -> None:
    traffic(api, 200, seed=5)
    rows = Prediction.objects.filter(confidence__isnull=False)
    waiting = [row.confidence for row in rows.filter(actual__isnull=True)]
    known = list(rows.filter(actual__isnull=False).values_list("confidence", "is_correct"))

    metrics = scrape(api)

    assert metrics[("model_estimated_accuracy", CHURN)] == pytest.approx(sum(waiting) / len(waiting))
    assert metrics[("model_labelled_confidence", CHURN)] == pytest.approx(sum(c for c, _ in known) / len(known))
    assert metrics[("model_labelled_accuracy", CHURN)] == pytest.approx(sum(ok for _, ok in known) / len(known))


def test_a_model_without_confidences_exports_no_estimate(api: ApiClient) -> None:
    api.post_json("/api/v1/predictions/", prediction_body())

    assert ("model_estimated_accuracy", CHURN) not in scrape(api)
    assert quality_list()[0].confidence is None


def test_rebuilt_confidence_counters_equal_the_incremental_ones(api: ApiClient) -> None:
    traffic(api, 150, seed=9)
    columns = ["confident", "confidence_sum", "confident_outcomes", "confident_outcomes_confidence_sum"]
    columns.append("confident_outcomes_correct")

    def state() -> list[tuple]:
        return [tuple(round(value, 6) for value in row) for row in VersionTally.objects.values_list(*columns)]

    kept = state()
    call_command("rebuild_quality_counters", stdout=StringIO())

    assert state() == kept
