import math
import random
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    mean_absolute_error,
    mean_squared_error,
    precision_score,
    recall_score,
)

from collector.models import ConfusionCell, OutcomeMinute, Prediction, VersionTally
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db

# The seed monitor's printed simulation: (prediction, actual, accuracy, precision, recall, F1) after each send.
# Its first send answered "Internal server error" after counting, so it prints no figures (None).
SEED_RUN_1 = [
    (0, 0, None),
    (1, 1, (1.0, 1.0, 1.0, 1.0)), (1, 1, (1.0, 1.0, 1.0, 1.0)), (1, 1, (1.0, 1.0, 1.0, 1.0)),
    (0, 0, (1.0, 1.0, 1.0, 1.0)),
    (1, 1, (1.0, 1.0, 1.0, 1.0)), (0, 0, (1.0, 1.0, 1.0, 1.0)), (1, 1, (1.0, 1.0, 1.0, 1.0)),
    (1, 1, (1.0, 1.0, 1.0, 1.0)), (0, 0, (1.0, 1.0, 1.0, 1.0)),
    (0, 1, (0.909, 1.000, 0.857, 0.923)), (0, 1, (0.833, 1.000, 0.750, 0.857)),
    (0, 0, (0.846, 1.000, 0.750, 0.857)), (0, 0, (0.857, 1.000, 0.750, 0.857)),
    (1, 0, (0.800, 0.857, 0.750, 0.800)),
    (0, 1, (0.750, 0.857, 0.667, 0.750)), (1, 1, (0.765, 0.875, 0.700, 0.778)),
    (0, 0, (0.778, 0.875, 0.700, 0.778)), (0, 0, (0.789, 0.875, 0.700, 0.778)),
    (1, 1, (0.800, 0.889, 0.727, 0.800)),
]  # fmt: skip
SEED_RUN_2 = [
    (1, 1, (0.810, 0.900, 0.750, 0.818)), (0, 0, (0.818, 0.900, 0.750, 0.818)),
    (0, 0, (0.826, 0.900, 0.750, 0.818)), (0, 0, (0.833, 0.900, 0.750, 0.818)),
    (1, 1, (0.840, 0.909, 0.769, 0.833)),
    (1, 1, (0.846, 0.917, 0.786, 0.846)), (1, 1, (0.852, 0.923, 0.800, 0.857)),
    (0, 0, (0.857, 0.923, 0.800, 0.857)), (1, 1, (0.862, 0.929, 0.812, 0.867)),
    (1, 1, (0.867, 0.933, 0.824, 0.875)),
    (0, 0, (0.871, 0.933, 0.824, 0.875)), (1, 1, (0.875, 0.938, 0.833, 0.882)),
    (1, 1, (0.879, 0.941, 0.842, 0.889)), (0, 1, (0.853, 0.941, 0.800, 0.865)),
    (1, 0, (0.829, 0.889, 0.800, 0.842)),
    (0, 0, (0.833, 0.889, 0.800, 0.842)), (1, 1, (0.838, 0.895, 0.810, 0.850)),
    (1, 1, (0.842, 0.900, 0.818, 0.857)), (0, 0, (0.846, 0.900, 0.818, 0.857)),
    (0, 0, (0.850, 0.900, 0.818, 0.857)),
]  # fmt: skip


def scrape(client: ApiClient) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def labels(**values: str) -> frozenset:
    return frozenset(values.items())


def test_post_feedback_reproduces_the_seed_simulation_to_three_decimals(api: ApiClient) -> None:
    for prediction, actual, expected in SEED_RUN_1 + SEED_RUN_2:
        response = api.post_json("/feedback", {"prediction": prediction, "actual": actual})

        assert response.status_code == 200
        metrics = response.json()["metrics"]
        printed = tuple(round(metrics[name], 3) for name in ("accuracy", "precision", "recall", "f1"))
        if expected is not None:
            assert printed == pytest.approx(expected, abs=5e-4), (prediction, actual)

    body = response.json()
    assert body["counts"] == {
        "true_positives": 18, "true_negatives": 16, "false_positives": 2, "false_negatives": 4, "total": 40,
    }  # fmt: skip
    assert (body["model"], body["version"]) == ("default", "unversioned")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prediction": True, "actual": 1}, "prediction"),
        ({"prediction": "1", "actual": 1}, "prediction"),
        ({"prediction": 1.5, "actual": 1}, "prediction"),
        ({"prediction": 1, "actual": None}, "actual"),
        ({"prediction": 1, "actual": 2}, "actual"),
        ({"prediction": 1}, "actual"),
        ([{"prediction": 1, "actual": 1}], "body"),
        ("1,1", "body"),
    ],
)
def test_post_feedback_refuses_anything_but_0_or_1(api: ApiClient, body: object, field: str) -> None:
    response = api.post_json("/feedback", body)

    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == field
    assert Prediction.objects.count() == 0
    assert VersionTally.objects.count() == 0


def test_post_feedback_refuses_a_model_that_is_not_binary(api: ApiClient) -> None:
    api.post_json("/api/v1/predictions/", prediction_body(model="topics", prediction="sports"))

    response = api.post_json("/feedback", {"prediction": 1, "actual": 1, "model": "topics"})

    assert response.status_code == 400
    assert "binary models only" in response.json()["error"]["message"]


def test_metrics_appear_only_once_there_is_an_outcome(api: ApiClient) -> None:
    api.post_json("/api/v1/predictions/", prediction_body(event_id="a"))
    samples = scrape(api)

    assert samples[("model_predictions_total", labels(model="churn", version="v1"))] == 1
    assert samples[("model_outcomes_total", labels(model="churn", version="v1"))] == 0
    assert ("model_accuracy", labels(model="churn", version="v1")) not in samples
    assert api.get("/api/v1/models/churn/metrics/").json()["versions"][0]["metrics"] is None


def test_a_changed_outcome_moves_one_count_and_a_retry_adds_none(api: ApiClient) -> None:
    api.post_json("/api/v1/predictions/", prediction_body(event_id="a", prediction=1, actual=1))
    api.post_json("/api/v1/predictions/", prediction_body(event_id="a", prediction=1, actual=1))  # a retry
    api.post_json("/api/v1/outcomes/", {"model": "churn", "event_id": "a", "actual": 1})  # unchanged

    api.post_json("/api/v1/outcomes/", {"model": "churn", "event_id": "a", "actual": 0})

    samples = scrape(api)
    churn = labels(model="churn", version="v1")
    assert samples[("true_positives_total", churn)] == 0
    assert samples[("false_positives_total", churn)] == 1
    assert samples[("model_outcomes_total", churn)] == 1
    assert samples[("model_accuracy", churn)] == 0.0


def random_traffic(api: ApiClient, model: str, task_type: str, make_value, count: int, seed: int) -> None:
    """Predictions, some with outcomes at once, some later, some changed later (the worst case for counters)."""
    rng = random.Random(seed)
    bodies = []
    for n in range(count):
        body = prediction_body(
            model=model, version=rng.choice(["v1", "v2"]), event_id=f"{model}-{n}", prediction=make_value(rng),
            task_type=task_type,
        )  # fmt: skip
        if rng.random() < 0.4:
            body["actual"] = make_value(rng)
        bodies.append(body)
    assert api.post_json("/api/v1/predictions/", bodies).status_code == 201
    later = [
        {"model": model, "event_id": f"{model}-{n}", "actual": make_value(rng)}
        for n in rng.sample(range(count), count // 2)
    ]
    assert api.post_json("/api/v1/outcomes/", later).status_code == 200
    changes = [{"model": model, "event_id": item["event_id"], "actual": make_value(rng)} for item in later[:30]]
    assert api.post_json("/api/v1/outcomes/", changes).status_code == 200


def stored_pairs(model: str, version: str) -> tuple[list, list]:
    rows = Prediction.objects.filter(
        registered_model__name=model, model_version__version=version, actual__isnull=False
    ).values_list("actual_label", "predicted_label", "actual", "prediction")
    return [row[0] or row[2] for row in rows], [row[1] or row[3] for row in rows]


def test_binary_metrics_equal_a_scikit_learn_recomputation_from_the_stored_rows(api: ApiClient) -> None:
    random_traffic(api, "churn", "binary", lambda rng: rng.choice([0, 1]), 300, seed=3)
    samples = scrape(api)

    for version in ("v1", "v2"):
        actual, predicted = stored_pairs("churn", version)
        key = labels(model="churn", version=version)
        assert samples[("model_accuracy", key)] == pytest.approx(accuracy_score(actual, predicted))
        options = {"pos_label": "1", "zero_division": 0}
        assert samples[("model_precision", key)] == pytest.approx(precision_score(actual, predicted, **options))
        assert samples[("model_recall", key)] == pytest.approx(recall_score(actual, predicted, **options))
        assert samples[("model_f1_score", key)] == pytest.approx(f1_score(actual, predicted, **options))
        assert samples[("true_positives_total", key)] == sum(
            a == p == "1" for a, p in zip(actual, predicted, strict=True)
        )
        assert samples[("model_outcomes_total", key)] == len(actual)


def test_multiclass_metrics_equal_a_scikit_learn_recomputation_per_class_and_macro(api: ApiClient) -> None:
    random_traffic(api, "topics", "multiclass", lambda rng: rng.choice(["sport", "news", "tech"]), 300, seed=5)
    samples = scrape(api)
    body = api.get("/api/v1/models/topics/metrics/", {"version": "v1"}).json()

    actual, predicted = stored_pairs("topics", "v1")
    key = labels(model="topics", version="v1")
    macro = {"average": "macro", "zero_division": 0}
    assert samples[("model_accuracy", key)] == pytest.approx(accuracy_score(actual, predicted))
    assert samples[("model_precision", key)] == pytest.approx(precision_score(actual, predicted, **macro))
    assert samples[("model_f1_score", key)] == pytest.approx(f1_score(actual, predicted, **macro))
    per_class = f1_score(actual, predicted, average=None, labels=["news", "sport", "tech"], zero_division=0)
    for label, expected in zip(["news", "sport", "tech"], per_class, strict=True):
        assert samples[("model_class_f1_score", labels(model="topics", version="v1", **{"class": label}))] == (
            pytest.approx(expected)
        )
        assert body["versions"][0]["per_class"][label]["f1"] == pytest.approx(expected)
    assert sum(cell["count"] for cell in body["versions"][0]["confusion_matrix"]) == len(actual)


def test_regression_metrics_equal_a_scikit_learn_recomputation(api: ApiClient) -> None:
    random_traffic(api, "price", "regression", lambda rng: round(rng.uniform(0, 100), 2), 200, seed=7)
    samples = scrape(api)

    actual, predicted = stored_pairs("price", "v2")
    key = labels(model="price", version="v2")
    assert samples[("model_mae", key)] == pytest.approx(mean_absolute_error(actual, predicted))
    assert samples[("model_rmse", key)] == pytest.approx(math.sqrt(mean_squared_error(actual, predicted)))


def test_rolling_windows_cover_the_last_outcomes_and_the_last_hour(api: ApiClient, settings) -> None:
    settings.FEEDBACKHUB_WINDOW_OUTCOMES = 4
    api.post_json("/api/v1/predictions/", [prediction_body(event_id=f"e{n}", prediction=1) for n in range(6)])
    for n, actual in enumerate([0, 0, 1, 1, 1, 0]):
        api.post_json("/api/v1/outcomes/", {"model": "churn", "event_id": f"e{n}", "actual": actual})

    samples = scrape(api)

    assert samples[("model_window_accuracy", labels(model="churn", version="v1", window="last_4"))] == 0.75
    assert samples[("model_window_accuracy", labels(model="churn", version="v1", window="last_1h"))] == 0.5
    windows = api.get("/api/v1/models/churn/metrics/").json()["versions"][0]["windows"]
    assert windows["last_4"] == {"outcomes": 4, "accuracy": 0.75, "mae": None}


def test_feedback_counts_by_kind_are_exported(api: ApiClient) -> None:
    prediction_id = api.post_json("/api/v1/predictions/", prediction_body()).json()["id"]
    api.post_json(
        "/api/v1/feedback/",
        [
            {"kind": "thumbs_down", "prediction_id": prediction_id},
            {"kind": "thumbs_down", "interaction_id": "x", "model": "churn"},
        ],
    )

    assert scrape(api)[("model_feedback_total", labels(model="churn", kind="thumbs_down"))] == 2


def test_the_metrics_api_refuses_unknown_models_and_versions(api: ApiClient) -> None:
    api.post_json("/api/v1/predictions/", prediction_body())

    assert api.get("/api/v1/models/nope/metrics/").status_code == 404
    response = api.get("/api/v1/models/churn/metrics/", {"version": "v9"})
    assert response.status_code == 404
    assert response.json()["error"]["fields"][0]["field"] == "version"


def test_metrics_can_require_a_token(anonymous: ApiClient, settings) -> None:
    settings.FEEDBACKHUB_METRICS_TOKEN = "scrape-secret"

    assert anonymous.get("/metrics").status_code == 401
    assert anonymous.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret").status_code == 200


def test_counter_rows_never_hold_negative_counts(api: ApiClient) -> None:
    random_traffic(api, "churn", "binary", lambda rng: rng.choice([0, 1]), 100, seed=11)

    assert not ConfusionCell.objects.filter(count__lt=0).exists()
    assert not VersionTally.objects.filter(outcomes__lt=0).exists()


def counter_state() -> tuple[list, list, list]:
    tallies = list(
        VersionTally.objects.order_by("model_version_id").values_list(
            "model_version_id", "predictions", "outcomes", "correct", "last_outcome_at"
        )
    )
    sums = [
        tuple(round(value, 6) for value in row)
        for row in VersionTally.objects.order_by("model_version_id").values_list(
            "error_sum", "abs_error_sum", "squared_error_sum"
        )
    ]
    cells = sorted(
        ConfusionCell.objects.filter(count__gt=0).values_list(
            "model_version_id", "actual_label", "predicted_label", "count"
        )
    )
    return tallies, sums, cells


def test_rebuilding_the_counters_from_the_rows_gives_what_was_kept_incrementally(api: ApiClient) -> None:
    random_traffic(api, "churn", "binary", lambda rng: rng.choice([0, 1]), 150, seed=13)
    random_traffic(api, "topics", "multiclass", lambda rng: rng.choice(["a", "b", "c"]), 150, seed=17)
    random_traffic(api, "price", "regression", lambda rng: round(rng.uniform(0, 10), 1), 150, seed=19)
    kept = counter_state()
    minutes = sorted(OutcomeMinute.objects.filter(outcomes__gt=0).values_list("model_version_id", "minute", "outcomes"))

    out = StringIO()
    call_command("rebuild_quality_counters", stdout=out)

    assert counter_state() == kept
    assert sorted(OutcomeMinute.objects.values_list("model_version_id", "minute", "outcomes")) == minutes
    assert "Rebuilt the counters of 6 model version(s)." in out.getvalue()


COUNTER_TABLES = (
    "collector_versiontally", "collector_confusioncell", "collector_outcomeminute", "collector_outcomehour",
    "collector_confusionhour", "collector_predictionhour", "collector_latencyhour",
)  # fmt: skip


def test_a_write_counts_in_every_counter_table_with_one_statement_on_postgresql(api: ApiClient) -> None:
    bodies = [
        prediction_body(model="churn", event_id=f"churn-{n}", prediction=n % 2, actual=(n // 2) % 2, latency_ms=n)
        for n in range(6)
    ]

    with CaptureQueriesContext(connection) as queries:
        assert api.post_json("/api/v1/predictions/", bodies).status_code == 201

    counting = [q["sql"] for q in queries if any(f'"{table}"' in q["sql"] for table in COUNTER_TABLES)]
    written = {table for table in COUNTER_TABLES if any(f'INTO "{table}"' in sql for sql in counting)}
    assert written == set(COUNTER_TABLES)
    assert len(counting) == (1 if connection.vendor == "postgresql" else len(COUNTER_TABLES))
    kept = counter_state()
    call_command("rebuild_quality_counters", stdout=StringIO())
    assert counter_state() == kept
    assert kept[0][0][1:4] == (6, 6, 3)  # predictions, outcomes, correct
