"""Drift end to end: references, windows counted by the beat task, reports, /metrics, review tasks."""

import json
from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from collector import drift
from collector.drift import drift_reference_record, drift_window_recount, drift_windows_update
from collector.models import (
    DriftCheck,
    DriftPolicy,
    DriftReference,
    DriftReferenceSource,
    DriftReport,
    DriftWindowHour,
    ModelVersion,
    RegisteredModel,
)
from collector.selectors import current_drift_check, drifted_features, latest_drift_check
from collector.services import Actor, PredictionIn, prediction_record_batch
from collector.sketches import input_features
from collector.tasks import check_drift
from reviews.models import ReviewTask, TaskStatus
from tests.conftest import ApiClient
from tests.loop.test_concurrent_ingest import run_in_threads

pytestmark = pytest.mark.django_db
ACTOR = Actor(label="test")
PLANS = ["basic", "pro", "team"]


@pytest.fixture(autouse=True)
def _no_watermark_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    # The task leaves the last seconds for its next run; a test runs it right after writing.
    monkeypatch.setattr(drift, "WATERMARK_LAG", timedelta(0))


def churn_inputs(count: int, seed: int, tenure_shift: float = 0.0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {"tenure": float(t), "spend": float(s), "plan": str(p)}
        for t, s, p in zip(
            rng.normal(24 + tenure_shift, 6, count),
            rng.normal(50, 10, count),
            rng.choice(PLANS, count, p=[0.5, 0.3, 0.2]),
            strict=True,
        )
    ]


def record(inputs: list[Any], *, model: str = "churn", version: str = "v1", **fields: Any) -> None:
    items = [
        PredictionIn(model=model, version=version, input=given, prediction=n % 2, confidence=0.8, **fields)
        for n, given in enumerate(inputs)
    ]
    for start in range(0, len(items), 500):
        prediction_record_batch(items=items[start : start + 500], actor=ACTOR)


def promoted_version(model: str = "churn", version: str = "v1") -> ModelVersion:
    """A version with a reference from its training set, as the loop records it at promotion."""
    registered = RegisteredModel.objects.create(name=model, task_type="binary")
    model_version = ModelVersion.objects.create(registered_model=registered, version=version)
    drift_reference_record(
        model_version=model_version,
        inputs=churn_inputs(3000, seed=1),
        predictions=[n % 2 for n in range(3000)],
        confidences=[0.8] * 3000,
    )
    return model_version


def scrape(client: ApiClient) -> dict[tuple[str, frozenset], float]:
    text = client.get("/metrics").content.decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**values: str) -> frozenset:
    return frozenset(values.items())


def psi_of(check: DriftCheck, feature: str) -> float:
    return check.reports.get(feature=feature, method="psi").value


def test_a_shift_seeded_into_one_feature_pushes_only_its_psi_over_the_threshold(anonymous: ApiClient) -> None:
    version = promoted_version()
    record(churn_inputs(1500, seed=2, tenure_shift=6))

    result = check_drift()

    assert result["checks"] == 1 and result["drifted"] == 1
    check = DriftCheck.objects.get()
    assert check.window_predictions == 1500
    assert psi_of(check, "tenure") > 0.2
    assert psi_of(check, "spend") < 0.05
    assert psi_of(check, "plan") < 0.05
    assert check.reports.get(feature="tenure", method="ks").drifted
    assert not check.reports.get(feature="plan", method="chi2").drifted
    current = current_drift_check(registered_model=version.registered_model, version="v1")
    assert {(f.feature, f.method) for f in drifted_features(drift_check=current)} == {
        ("tenure", "psi"),
        ("tenure", "ks"),
    }
    metrics = scrape(anonymous)
    tenure = labels(model="churn", version="v1", feature="tenure", method="psi")
    assert metrics[("model_feature_drift", tenure)] == pytest.approx(psi_of(check, "tenure"))
    assert metrics[("model_drift_threshold", labels(model="churn", version="v1", method="psi"))] == 0.2
    assert metrics[("model_drifted_features", labels(model="churn", version="v1"))] == 1
    score = labels(model="churn", version="v1", feature="score", method="psi")
    assert metrics[("model_prediction_drift", score)] == pytest.approx(0.0, abs=1e-9)
    assert (
        "model_feature_drift_p_value",
        labels(model="churn", version="v1", feature="plan", method="chi2"),
    ) in metrics


def test_a_drifted_version_opens_one_review_task_until_it_is_closed() -> None:
    version = promoted_version()
    record(churn_inputs(500, seed=3, tenure_shift=8))

    first = check_drift()
    drift.drift_check_all(force=True)
    second = check_drift()

    task = ReviewTask.objects.get()
    assert first["review_tasks_opened"] == [task.pk] and second["review_tasks_opened"] == []
    assert task.pattern_key == "drift:v1" and task.registered_model_id == version.registered_model_id
    assert "tenure" in task.events.get().detail
    ReviewTask.objects.filter(pk=task.pk).update(status=TaskStatus.RESOLVED)
    drift.drift_check_all(force=True)
    assert check_drift()["review_tasks_opened"] == []  # not due yet: checks run every CHECK_INTERVAL


def test_no_review_task_when_the_policy_says_so() -> None:
    version = promoted_version()
    DriftPolicy.objects.create(registered_model=version.registered_model, open_review_task=False)
    record(churn_inputs(500, seed=3, tenure_shift=8))

    assert check_drift()["drifted"] == 1
    assert not ReviewTask.objects.exists()


def test_a_window_too_small_to_judge_records_no_check() -> None:
    promoted_version()
    record(churn_inputs(99, seed=4))

    assert check_drift()["checks"] == 0
    assert DriftWindowHour.objects.get().predictions == 99


def test_a_model_trained_elsewhere_gets_a_reference_from_its_first_predictions() -> None:
    registered = RegisteredModel.objects.create(name="churn", task_type="binary")
    DriftPolicy.objects.create(registered_model=registered, reference_size=200, min_window_predictions=50)
    record(churn_inputs(150, seed=5))
    assert check_drift()["references"] == 0

    record(churn_inputs(100, seed=6), event_id="")
    check_drift()

    reference = DriftReference.objects.get()
    assert reference.source == DriftReferenceSource.PREDICTIONS
    assert reference.sample_size == 200
    assert set(reference.inputs) == {"tenure", "spend", "plan"}
    assert set(reference.outputs) == {"score", "prediction"}
    # The reference's own predictions never count in a window: only the 50 after it.
    assert sum(hour.predictions for hour in DriftWindowHour.objects.all()) == 50


def window_state(version: ModelVersion) -> list[tuple]:
    return sorted(
        (row.hour, row.predictions, row.inputs, row.outputs)
        for row in DriftWindowHour.objects.filter(model_version=version)
    )


def test_incremental_window_counts_equal_a_full_recount() -> None:
    version = promoted_version()
    now = timezone.now()
    for batch in range(4):
        inputs = churn_inputs(120, seed=10 + batch, tenure_shift=batch)
        record(inputs[:60], timestamp=now - timedelta(hours=batch))
        record(inputs[60:], timestamp=now - timedelta(hours=batch + 1, minutes=10))
        drift_windows_update(max_chunks=1)
    drift_windows_update()
    incremental = window_state(version)

    counted = drift_window_recount(model_version=version)

    assert counted == 480
    assert sum(row[1] for row in incremental) == 480 and len(incremental) >= 5
    assert window_state(version) == incremental


def test_two_runs_never_count_a_prediction_twice() -> None:
    version = promoted_version()
    record(churn_inputs(300, seed=20))

    drift_windows_update()
    drift_windows_update()

    assert sum(row[1] for row in window_state(version)) == 300


def test_windows_leave_out_hours_older_than_the_window() -> None:
    version = promoted_version()
    old = datetime(2020, 1, 1, tzinfo=UTC)
    record(churn_inputs(300, seed=21, tenure_shift=10), timestamp=old)
    record(churn_inputs(300, seed=22))

    check_drift()

    check = DriftCheck.objects.get(model_version=version)
    assert check.window_predictions == 300
    assert not check.drifted
    assert not DriftWindowHour.objects.filter(hour=old).exists()  # forgotten once no window reaches it


def test_a_rebuilt_reference_drops_the_counts_in_the_old_bins() -> None:
    version = promoted_version()
    record(churn_inputs(300, seed=23))
    drift_windows_update()

    call_command("drift_reference", "churn", "--size", "100", stdout=StringIO())

    reference = DriftReference.objects.get(model_version=version)
    assert reference.source == DriftReferenceSource.PREDICTIONS and reference.sample_size == 100
    assert sum(row[1] for row in window_state(version)) == 200


def test_the_reference_command_explains_what_is_missing() -> None:
    with pytest.raises(CommandError, match="No such model"):
        call_command("drift_reference", "nope", stdout=StringIO())
    record(churn_inputs(10, seed=24))
    with pytest.raises(CommandError, match="fewer than 1000"):
        call_command("drift_reference", "churn", stdout=StringIO())


def test_non_finite_and_huge_numbers_are_left_out_of_the_features() -> None:
    given = [float("inf"), -float("inf"), float("nan"), 10**400, -(10**400), True, None, 2]

    assert input_features(given) == {"x[5]": "true", "x[7]": 2.0}
    assert input_features(float("nan")) == {}
    assert input_features({"a": {"b": [1, {"c": "d"}]}}) == {"a.b[0]": 1.0, "a.b[1].c": "d"}


HOSTILE_INPUTS: list[Any] = [
    [10**400, -(10**400), True, None, 1.5],
    {"nested": {"deeper": {"deeper": {"deeper": {"deeper": {"deeper": 1.0}}}}}},
    {f"key{n}": n for n in range(10_000)},
    {f"key{n}": f"value{n}" for n in range(10_000)},
    [[[[[[[[[[[]]]]]]]]]]],
    {"": {"": [{"": None}]}},
    "x" * 100_000,
    {"k" * 10_000: "v" * 10_000},
    list(range(10_000)),
]


@pytest.mark.parametrize("hostile", HOSTILE_INPUTS, ids=range(len(HOSTILE_INPUTS)))
def test_hostile_inputs_never_raise_and_never_blow_up_the_sketches(hostile: Any) -> None:
    version = promoted_version()
    DriftPolicy.objects.create(registered_model=version.registered_model, min_window_predictions=10)
    drift_reference_record(model_version=version, inputs=[hostile] * 200 + churn_inputs(200, seed=25))
    record([hostile] * 20)

    check_drift()

    reference = DriftReference.objects.get()
    assert len(reference.inputs) <= 50
    assert all(len(name) <= 100 for name in reference.inputs)
    assert all(len(spec["counts"]) <= 21 for spec in reference.inputs.values())
    window = DriftWindowHour.objects.get()
    assert window.predictions == 20
    assert DriftCheck.objects.get().window_predictions == 20
    assert set(window.inputs) <= set(reference.inputs)
    assert set(DriftReport.objects.values_list("feature", flat=True)) <= set(reference.inputs)
    assert len(json.dumps(reference.inputs)) < 50_000 and len(json.dumps(window.inputs)) < 20_000


def test_drifted_features_is_empty_for_a_model_never_checked() -> None:
    version = promoted_version()

    assert current_drift_check(registered_model=version.registered_model, version="v1") is None
    assert drifted_features(drift_check=None) == []


def test_a_check_older_than_an_hour_is_not_current_nor_exported(anonymous) -> None:
    version = promoted_version()
    record(churn_inputs(1500, seed=3, tenure_shift=6))
    check_drift()
    check = DriftCheck.objects.get()
    assert current_drift_check(registered_model=version.registered_model, version="v1") == check

    DriftCheck.objects.filter(pk=check.pk).update(created_at=timezone.now() - timedelta(hours=2))

    assert current_drift_check(registered_model=version.registered_model, version="v1") is None
    assert latest_drift_check(registered_model=version.registered_model, version="v1") == check  # still shown
    assert not [name for name, _ in scrape(anonymous) if name.startswith("model_feature_drift")]


def test_drift_policies_checks_and_reports_show_in_the_admin(admin_client: Any) -> None:
    version = promoted_version()
    record(churn_inputs(300, seed=26, tenure_shift=8))
    check_drift()
    check = DriftCheck.objects.get()

    pages = [
        "/admin/collector/driftpolicy/",
        f"/admin/collector/driftpolicy/{DriftPolicy.objects.get().pk}/change/",
        "/admin/collector/driftreference/",
        f"/admin/collector/driftreference/{version.drift_reference.pk}/change/",
        "/admin/collector/driftcheck/?drifted__exact=1",
        f"/admin/collector/driftcheck/{check.pk}/change/",
    ]

    for page in pages:
        response = admin_client.get(page)
        assert response.status_code == 200, page
    assert "tenure" in admin_client.get(pages[-1]).content.decode()
    response = admin_client.post(
        pages[1],
        {
            "registered_model": version.registered_model_id, "enabled": "on", "open_review_task": "on",
            "psi_threshold": "0.3", "ks_threshold": "0.1", "p_value": "0.01", "window_hours": "12",
            "min_window_predictions": "100", "reference_size": "1000",
        },
    )  # fmt: skip
    assert response.status_code == 302
    assert DriftPolicy.objects.get().psi_threshold == 0.3
    refused = admin_client.post(pages[1], {"registered_model": version.registered_model_id, "window_hours": "0"})
    assert refused.status_code == 200 and DriftPolicy.objects.get().window_hours == 12


@pytest.mark.django_db(transaction=True)
def test_racing_window_updates_count_each_prediction_once(monkeypatch: pytest.MonkeyPatch) -> None:
    version = promoted_version()
    record(churn_inputs(600, seed=27))
    monkeypatch.setattr(drift, "CHUNK", 50)

    errors = run_in_threads(lambda _: drift_windows_update(), 4)

    assert errors == []
    counted = window_state(version)
    assert sum(row[1] for row in counted) == 600
    drift_window_recount(model_version=version)
    assert window_state(version) == counted


def test_a_reviewer_reads_the_drift_check_behind_a_task_and_changes_nothing(django_user_model: Any) -> None:
    from django.contrib.auth.models import Group
    from django.test import Client

    version = promoted_version()
    record(churn_inputs(300, seed=28, tenure_shift=8))
    check_drift()
    user = django_user_model.objects.create_user("rita", password="unused-password", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewers"))
    client = Client()
    client.force_login(user)

    page = client.get(f"/admin/collector/driftcheck/{DriftCheck.objects.get().pk}/change/")

    assert page.status_code == 200 and "tenure" in page.content.decode()
    assert client.get(f"/admin/reviews/reviewtask/{ReviewTask.objects.get().pk}/change/").status_code == 200
    policy = DriftPolicy.objects.get(registered_model=version.registered_model)
    assert client.post(f"/admin/collector/driftpolicy/{policy.pk}/change/", {"psi_threshold": "9"}).status_code == 403
