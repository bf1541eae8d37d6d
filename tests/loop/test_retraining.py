"""The improvement loop through its services and API. Tasks run in-process here (eager); a real Celery worker
runs the same loop in tests/e2e/test_retrain_worker.py."""

import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from collector.models import Prediction, RegisteredModel
from feedbackhub.celery import app as celery_app
from loop import services
from loop.artifacts import dataset_hash
from loop.datasets import dataset_read
from loop.models import LabelledExample, ModelArtifact, Promotion, RetrainPolicy, RunStatus, TrainingRun
from tests.conftest import ApiClient

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _tasks_in_process(django_capture_on_commit_callbacks) -> Iterator[None]:
    celery_app.conf.task_always_eager = True
    try:
        yield
    finally:
        celery_app.conf.task_always_eager = False


@pytest.fixture
def seed_model() -> RegisteredModel:
    model = RegisteredModel.objects.create(name="seed", task_type="binary")
    RetrainPolicy.objects.create(registered_model=model, min_new_examples=5, holdout_share=0.25)
    return model


def separable(count: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        x, y = rng.random(), rng.random()
        rows.append({"input": [x, y], "target": int(x + y > 1)})
    return rows


def post_examples(api: ApiClient, rows: list[dict], capture) -> object:
    with capture(execute=True):
        return api.post_json("/api/v1/models/seed/examples/", rows)


def test_seed_001_examples_retrain_only_past_the_threshold(
    api: ApiClient, seed_model, django_capture_on_commit_callbacks
) -> None:
    rows = separable(40)
    post_examples(api, rows[:2], django_capture_on_commit_callbacks)
    assert not TrainingRun.objects.exists()

    seed_model.retrain_policy.min_new_examples = 40
    seed_model.retrain_policy.save()
    response = post_examples(api, rows[2:], django_capture_on_commit_callbacks)

    assert response.status_code == 201
    run = TrainingRun.objects.get()
    assert (run.trigger, run.status, run.promoted) == ("threshold", RunStatus.SUCCEEDED, True), run.error
    assert (run.train_count, run.holdout_count) == (30, 10)
    assert "against the trivial baseline" in run.decision
    artifact = ModelArtifact.objects.get()
    assert Path(artifact.path).is_file() and len(artifact.sha256) == 64 and artifact.size > 0
    assert services.current_champion(seed_model) == run.candidate_version


SEED_001_EXAMPLES = [
    {"input": [0.5, 1.0, 2.1], "target": 1},  # the seed's own two
    {"input": [0.2, 0.8, 1.5], "target": 0},
    {"input": [0.9, 1.3, 2.6], "target": 1},
    {"input": [0.1, 0.4, 1.1], "target": 0},
    {"input": [0.7, 1.1, 2.3], "target": 1},
]


def test_seed_001_threshold_of_five_two_examples_retrain_nothing_five_do(
    api: ApiClient, seed_model, django_capture_on_commit_callbacks
) -> None:
    assert seed_model.retrain_policy.min_new_examples == 5
    for example in SEED_001_EXAMPLES[:2]:  # one at a time, as the seed's process_feedback() does
        assert post_examples(api, example, django_capture_on_commit_callbacks).status_code == 201
    assert not TrainingRun.objects.exists()

    for example in SEED_001_EXAMPLES[2:]:
        post_examples(api, example, django_capture_on_commit_callbacks)

    run = TrainingRun.objects.get()
    assert (run.trigger, run.status, run.train_count, run.holdout_count) == ("threshold", RunStatus.SUCCEEDED, 4, 1)
    assert run.candidate_version is not None and "on 1 held-out examples" in run.decision


def test_a_champion_that_cannot_read_the_new_inputs_is_replaced_not_blocking(seed_model) -> None:
    store_examples(seed_model, separable(40))
    old = train_now(seed_model).candidate_version
    LabelledExample.objects.all().delete()
    rng = random.Random(3)
    wider = [[rng.random(), rng.random(), rng.random()] for _ in range(60)]  # clients now send three numbers
    store_examples(seed_model, [{"input": row, "target": int(row[0] + row[1] > 1)} for row in wider])

    run = train_now(seed_model)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert "the trivial baseline" in run.decision and services.current_champion(seed_model) != old


def test_a_promotion_records_the_champions_drift_reference(seed_model) -> None:
    from collector.models import DriftReference

    store_examples(seed_model, separable(60))

    run = train_now(seed_model)

    reference = DriftReference.objects.get(model_version=run.candidate_version)
    assert (reference.source, reference.sample_size) == ("training", run.train_count)
    assert set(reference.inputs) == {"x[0]", "x[1]"} and set(reference.outputs) == {"score", "prediction"}
    assert sum(reference.inputs["x[0]"]["counts"]) == run.train_count


@pytest.mark.parametrize(
    ("body", "field"),
    [({"input": [1, 2]}, "target"), ({"target": 1}, "input"), ({"input": [1], "target": "cat"}, "target")],
)
def test_anything_else_is_an_invalid_feedback_format(api: ApiClient, seed_model, body: dict, field: str) -> None:
    response = api.post_json("/api/v1/models/seed/examples/", body)

    assert response.status_code == 400
    assert response.json()["error"]["fields"][0]["field"] == field
    assert not LabelledExample.objects.exists()


def train_now(model: RegisteredModel) -> TrainingRun:
    run, created = services.retrain_request(registered_model=model, trigger="test")
    assert created
    return services.training_run_execute(run_id=run.pk) or TrainingRun.objects.get(pk=run.pk)


def store_examples(model: RegisteredModel, rows: list[dict]) -> None:
    LabelledExample.objects.bulk_create(
        LabelledExample(registered_model=model, input=row["input"], target=row["target"], actor="t") for row in rows
    )


def test_a_candidate_that_is_not_better_keeps_the_champion(seed_model) -> None:
    store_examples(seed_model, separable(60))
    first = train_now(seed_model)
    policy = seed_model.retrain_policy
    policy.min_improvement = 0.5
    policy.save()
    store_examples(seed_model, separable(20, seed=2))

    second = train_now(seed_model)

    assert first.promoted and not second.promoted
    assert "kept the champion" in second.decision
    assert services.current_champion(seed_model) == first.candidate_version
    assert second.champion_score is not None


def test_the_first_model_must_beat_the_trivial_baseline(seed_model) -> None:
    store_examples(seed_model, [{"input": [0.5, 0.5], "target": int(n % 10 < 7)} for n in range(40)])

    run = train_now(seed_model)

    assert run.status == RunStatus.SUCCEEDED and not run.promoted
    assert services.current_champion(seed_model) is None


def test_a_failed_run_keeps_the_champion_and_records_the_error(seed_model) -> None:
    store_examples(seed_model, separable(60))
    first = train_now(seed_model)
    seed_model.retrain_policy.trainer_spec = {"estimator": "os.system"}
    seed_model.retrain_policy.save()

    failed = train_now(seed_model)

    assert failed.status == RunStatus.FAILED and "os.system" in failed.error
    assert services.current_champion(seed_model) == first.candidate_version


def test_duplicate_triggers_coalesce_into_one_run(api: ApiClient, seed_model) -> None:
    celery_app.conf.task_always_eager = False  # leave the run queued, as a busy worker would
    first = api.post_json("/api/v1/models/seed/retrain/", {})
    second = api.post_json("/api/v1/models/seed/retrain/", {})
    _, created = services.retrain_request(registered_model=seed_model, trigger="threshold")

    assert first.status_code == 202 and second.status_code == 409
    assert created is False
    assert TrainingRun.objects.count() == 1
    assert api.get(f"/api/v1/training-runs/{first.json()['id']}/").json()["status"] == "queued"


def test_a_run_is_executed_once_however_often_it_is_delivered(seed_model) -> None:
    store_examples(seed_model, separable(40))
    run, _ = services.retrain_request(registered_model=seed_model, trigger="test")

    assert services.training_run_execute(run_id=run.pk) is not None
    assert services.training_run_execute(run_id=run.pk) is None
    assert Promotion.objects.count() == 1


def test_predict_uses_the_champion_records_the_prediction_and_follows_a_rollback(api: ApiClient, seed_model) -> None:
    policy = seed_model.retrain_policy
    policy.trainer_spec = {"estimator": "sklearn.tree.DecisionTreeClassifier", "params": {"max_depth": 1}}
    policy.save()
    store_examples(seed_model, separable(60))
    first = train_now(seed_model)
    policy.trainer_spec = {}
    policy.save()
    store_examples(seed_model, separable(200, seed=3))
    second = train_now(seed_model)
    assert first.promoted and second.promoted, (first.decision, second.decision)

    answer = api.post_json("/api/v1/models/seed/predict/", {"input": [0.9, 0.9]}).json()
    assert (answer["prediction"], answer["version"]) == ("1", second.candidate_version.version)
    stored = Prediction.objects.get(event_id=answer["event_id"])
    assert stored.source == "predict" and 0.5 <= stored.confidence <= 1

    rollback = api.post_json("/api/v1/models/seed/rollback/", {})
    assert rollback.json() == {
        "champion": first.candidate_version.version,
        "previous": second.candidate_version.version,
    }
    again = api.post_json("/api/v1/models/seed/predict/", [{"input": [0.1, 0.1]}, {"input": [0.9, 0.8]}]).json()
    assert [row["version"] for row in again] == [first.candidate_version.version] * 2
    assert [row["prediction"] for row in again] == ["0", "1"]
    versions = {row["version"]: row["champion"] for row in api.get("/api/v1/models/seed/versions/").json()}
    assert versions == {first.candidate_version.version: True, second.candidate_version.version: False}


def test_predict_without_a_champion_says_what_to_do(api: ApiClient, seed_model) -> None:
    response = api.post_json("/api/v1/models/seed/predict/", {"input": [1, 2]})

    assert response.status_code == 409
    assert "retrain it first" in response.json()["error"]["message"]
    assert api.post_json("/api/v1/models/seed/rollback/", {}).status_code == 409


def test_outcomes_and_approved_labels_are_training_data_and_the_label_wins(api: ApiClient, seed_model) -> None:
    rows = separable(40)
    api.post_json(
        "/api/v1/predictions/",
        [{"model": "seed", "version": "v0", "input": r["input"], "prediction": 0, "actual": r["target"]} for r in rows],
    )
    relabelled = Prediction.objects.order_by("pk").first()
    Prediction.objects.filter(pk=relabelled.pk).update(training_label=1 - relabelled.actual)

    dataset = dataset_read(registered_model=seed_model)
    targets = dict(zip(dataset.ids.tolist(), dataset.targets.tolist(), strict=True))

    assert len(dataset) == 40
    assert targets[relabelled.pk] == str(1 - relabelled.actual)
    assert services.labelled_since(registered_model=seed_model, since=None) == 40


def test_the_newest_holdout_is_never_trained_on(seed_model) -> None:
    store_examples(seed_model, separable(40))

    run = train_now(seed_model)

    trained = list(LabelledExample.objects.order_by("created_at", "pk"))[: -run.holdout_count]

    assert run.dataset_sha256 == dataset_hash(
        ids=np.array([-row.pk for row in trained]),
        inputs=np.array([row.input for row in trained]),
        targets=np.array([str(row.target) for row in trained], dtype=object),
    )


def test_the_label_queue_api_ranks_unlabelled_predictions(api: ApiClient, seed_model) -> None:
    api.post_json(
        "/api/v1/predictions/",
        [
            {"model": "seed", "version": "v1", "input": [0.1], "prediction": 1, "confidence": 0.99, "event_id": "sure"},
            {
                "model": "seed",
                "version": "v1",
                "input": [0.5],
                "prediction": 1,
                "confidence": 0.51,
                "event_id": "unsure",
            },
            {"model": "seed", "version": "v1", "input": [0.9], "prediction": 1, "actual": 1, "event_id": "done"},
        ],
    )

    rows = api.get("/api/v1/models/seed/label-queue/", {"limit": 5}).json()

    assert [row["input"] for row in rows] == [[0.5], [0.1]]
    assert rows[0]["score"] > rows[1]["score"] and rows[0]["reasons"]
    assert api.get("/api/v1/models/seed/label-queue/", {"limit": "0"}).status_code == 400


def test_a_reviewer_labels_straight_from_the_admin_queue(api: ApiClient, seed_model) -> None:
    from django.contrib.auth.models import Group, User
    from django.test import Client

    prediction_id = api.post_json(
        "/api/v1/predictions/", {"model": "seed", "version": "v1", "input": [0.5], "prediction": 1, "confidence": 0.5}
    ).json()["id"]
    user = User.objects.create_user("rita", password="unused-password", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewers"))
    client = Client()
    client.force_login(user)

    page = client.get("/admin/reviews/reviewtask/label-queue/", {"model": "seed"})
    assert page.status_code == 200 and f"#{prediction_id}" in page.content.decode()
    client.post(
        "/admin/reviews/reviewtask/label-queue/", {"model": "seed", "prediction_id": prediction_id, "label": "0"}
    )

    labelled = Prediction.objects.get(pk=prediction_id)
    assert (labelled.training_label, labelled.actual) == (0, None)
    assert f"#{prediction_id}" not in client.get("/admin/reviews/reviewtask/label-queue/").content.decode()


def test_the_retrain_command_reports_the_decision(seed_model) -> None:
    from io import StringIO

    from django.core.management import call_command

    store_examples(seed_model, separable(60))
    out, err = StringIO(), StringIO()

    call_command("retrain", "seed", stdout=out, stderr=err)

    assert "training 'seed' on up to 60 labelled examples" in err.getvalue()
    assert "promoted" in out.getvalue()


def test_the_champions_training_rows_survive_retention(api: ApiClient, seed_model) -> None:
    from datetime import UTC, datetime, timedelta

    from collector.retention import retention_purge

    old = (datetime.now(UTC) - timedelta(days=90)).isoformat()
    rows = separable(40)
    bodies = [
        {"model": "seed", "version": "v0", "input": row["input"], "prediction": 0, "actual": row["target"]}
        for row in rows
    ]
    api.post_json("/api/v1/predictions/", [{**body, "timestamp": old} for body in bodies])
    run = train_now(seed_model)
    assert run.promoted
    seed_model.retention_days = 30
    seed_model.save()

    assert retention_purge(registered_model=seed_model).predictions == 0
    assert Prediction.objects.filter(registered_model=seed_model).count() == 40


def test_a_run_whose_worker_died_is_failed_and_its_trigger_fires_again(seed_model, settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    store_examples(seed_model, separable(40))  # past the threshold of 5
    celery_app.conf.task_always_eager = False
    run, _ = services.retrain_request(registered_model=seed_model, trigger="threshold")
    silent_since = timezone.now() - timedelta(seconds=settings.FEEDBACKHUB_RUN_STALE_SECONDS + 1)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, started_at=silent_since, heartbeat_at=silent_since
    )

    queued = services.retrain_due_models()

    run.refresh_from_db()
    assert (run.status, run.worker_lost) == (RunStatus.FAILED, True) and "heartbeat went silent" in run.error
    # The examples the lost run was to train on still count: the threshold queues a new run at once.
    assert [(again.trigger, again.status) for again in queued] == [("threshold", RunStatus.QUEUED)]


def test_a_trigger_fires_again_once_after_a_lost_run_not_forever(seed_model, settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    store_examples(seed_model, separable(40))
    celery_app.conf.task_always_eager = False
    silent_since = timezone.now() - timedelta(seconds=settings.FEEDBACKHUB_RUN_STALE_SECONDS + 1)
    LabelledExample.objects.update(created_at=silent_since - timedelta(minutes=1))  # they came before the runs
    lost = []
    for attempt in range(3):
        run = services.retrain_if_due(registered_model=seed_model)
        if run is None:
            break
        started = silent_since - timedelta(seconds=10 - attempt)  # each later than the one before, all silent
        TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, started_at=started, heartbeat_at=started)
        services.training_runs_fail_stale()
        lost.append(run.pk)

    assert len(lost) == 2  # the first run, and one retry; then it waits for new examples
    store_examples(seed_model, separable(5, seed=9))
    assert services.retrain_if_due(registered_model=seed_model) is not None


def test_a_run_that_still_beats_or_waits_in_the_queue_is_left_alone(seed_model, settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    celery_app.conf.task_always_eager = False
    other = RegisteredModel.objects.create(name="other", task_type="binary")
    running, _ = services.retrain_request(registered_model=seed_model, trigger="test")
    queued, _ = services.retrain_request(registered_model=other, trigger="test")
    started = timezone.now() - timedelta(hours=3)  # a long fit, but its heartbeat is fresh
    TrainingRun.objects.filter(pk=running.pk).update(
        status=RunStatus.RUNNING, started_at=started, heartbeat_at=timezone.now()
    )
    # Waiting behind other runs for longer than a heartbeat window is normal; for longer than a run may last is not.
    TrainingRun.objects.filter(pk=queued.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.FEEDBACKHUB_RUN_STALE_SECONDS * 2)
    )

    assert services.training_runs_fail_stale() == 0

    TrainingRun.objects.filter(pk=queued.pk).update(
        created_at=timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 61)
    )
    assert services.training_runs_fail_stale() == 1
    queued.refresh_from_db()
    assert queued.status == RunStatus.FAILED and "no worker picked the run up" in queued.error
    assert not queued.worker_lost


def test_a_schedule_retrains_whatever_the_threshold(seed_model) -> None:
    from datetime import timedelta

    from django.utils import timezone
    from django_celery_beat.models import CrontabSchedule

    celery_app.conf.task_always_eager = False
    policy = seed_model.retrain_policy
    policy.min_new_examples = 1000
    policy.schedule = CrontabSchedule.objects.create(minute="*")
    policy.save()
    earlier = TrainingRun.objects.create(registered_model=seed_model, trigger="t", status=RunStatus.SUCCEEDED)
    TrainingRun.objects.filter(pk=earlier.pk).update(started_at=timezone.now() - timedelta(minutes=3))

    run = services.retrain_if_due(registered_model=seed_model)

    assert run is not None and run.trigger == "schedule"


def test_the_threshold_rises_when_retrains_stop_improving(seed_model) -> None:
    store_examples(seed_model, separable(60))
    assert train_now(seed_model).promoted
    policy = seed_model.retrain_policy
    policy.min_improvement = 0.9
    policy.save()

    for _ in range(3):
        assert not train_now(seed_model).promoted

    policy.refresh_from_db()
    change = policy.threshold_changes.get()
    assert (change.old_threshold, change.new_threshold, policy.min_new_examples) == (5, 20, 20)  # 7.5, floored at 20
    assert "did not beat the champion" in change.reason


def test_the_threshold_drops_when_the_champions_live_accuracy_drops(api: ApiClient, seed_model) -> None:
    store_examples(seed_model, separable(80))
    run = train_now(seed_model)
    policy = seed_model.retrain_policy
    policy.min_new_examples = 400
    policy.save()
    version = run.candidate_version.version
    bodies = [
        {"model": "seed", "version": version, "input": [0.9, 0.9], "prediction": 1, "actual": int(n % 4 == 0)}
        for n in range(40)
    ]
    api.post_json("/api/v1/predictions/", bodies)  # live accuracy 25%, far below the holdout's

    change = services.threshold_adjust_for_quality(registered_model=seed_model)

    assert change is not None and (change.old_threshold, change.new_threshold) == (400, 200)
    assert "live accuracy over the last hour is 0.250" in change.reason
    assert services.threshold_adjust_for_quality(registered_model=seed_model) is None  # at most hourly


def record_drift_check(version, drifted: dict[str, bool]) -> None:
    from django.utils import timezone

    from collector.models import DriftCheck, DriftReference, DriftReport

    now = timezone.now()
    check = DriftCheck.objects.create(
        model_version=version, window_start=now, window_end=now, window_predictions=500, reference_size=100,
        drifted=any(drifted.values()),
    )  # fmt: skip
    DriftReport.objects.bulk_create(
        DriftReport(drift_check=check, feature=feature, method="psi", value=0.8 if moved else 0.01, threshold=0.2,
                    drifted=moved)
        for feature, moved in drifted.items()
    )  # fmt: skip
    DriftReference.objects.update_or_create(
        model_version=version, defaults={"source": "training", "sample_size": 100, "last_check": check}
    )


def test_the_threshold_drops_when_the_champion_drifts(seed_model) -> None:
    store_examples(seed_model, separable(60))
    champion = train_now(seed_model).candidate_version
    policy = seed_model.retrain_policy
    policy.min_new_examples = 400
    policy.save()
    record_drift_check(champion, {"x[0]": False, "x[1]": False})
    assert services.threshold_adjust_for_drift(registered_model=seed_model) is None

    record_drift_check(champion, {"x[0]": True, "x[1]": False})
    change = services.threshold_adjust_for_drift(registered_model=seed_model)

    assert change is not None and (change.old_threshold, change.new_threshold) == (400, 200)
    assert change.reason == "drift in x[0]: retrain sooner"
    assert services.threshold_adjust_for_drift(registered_model=seed_model) is None  # at most hourly


def test_input_the_champion_cannot_use_is_a_400(api: ApiClient, seed_model) -> None:
    store_examples(seed_model, separable(40))
    train_now(seed_model)

    for bad in ([0.1, 0.2, 0.3], "abc", [10**400, 1]):
        response = api.post_json("/api/v1/models/seed/predict/", {"input": bad})
        assert response.status_code == 400, (bad, response.content)
        assert response.json()["error"]["fields"][0]["field"] == "input"


def test_an_example_of_another_shape_is_skipped_not_fatal(api: ApiClient, seed_model) -> None:
    store_examples(seed_model, separable(40))
    api.post_json("/api/v1/models/seed/examples/", {"input": "poison", "target": 1})

    run = train_now(seed_model)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert "1 labelled examples skipped" in run.decision


def test_a_client_cannot_block_runs_by_taking_the_next_version_name(api: ApiClient, seed_model) -> None:
    store_examples(seed_model, separable(40))
    for n in range(1, 4):
        api.post_json(
            "/api/v1/predictions/", {"model": "seed", "version": f"hub-{n}", "input": [0.5, 0.5], "prediction": 1}
        )

    run = train_now(seed_model)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.candidate_version.version.startswith(f"hub-{run.pk}-")


def test_the_threshold_rises_once_per_three_fresh_runs_and_a_lower_never_raises(seed_model) -> None:
    store_examples(seed_model, separable(60))
    assert train_now(seed_model).promoted
    policy = seed_model.retrain_policy
    policy.min_new_examples, policy.min_improvement, policy.min_threshold = 100, 0.9, 20
    policy.save()

    for _ in range(4):
        train_now(seed_model)
    policy.refresh_from_db()
    assert list(policy.threshold_changes.values_list("new_threshold", flat=True)) == [150]

    policy.min_new_examples = 5
    policy.save()
    assert services._change_threshold(policy, factor=0.5, reason="test") is None


def test_a_queued_run_no_worker_picked_up_is_failed(seed_model, settings) -> None:
    from datetime import timedelta

    from django.utils import timezone

    celery_app.conf.task_always_eager = False
    run, _ = services.retrain_request(registered_model=seed_model, trigger="test")
    long_ago = timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120)
    TrainingRun.objects.filter(pk=run.pk).update(created_at=long_ago)

    services.retrain_due_models()

    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "no worker" in run.error


def test_a_huge_integer_regression_target_is_a_400(api: ApiClient) -> None:
    model = RegisteredModel.objects.create(name="price", task_type="regression")
    RetrainPolicy.objects.create(registered_model=model)

    response = api.post_json("/api/v1/models/price/examples/", {"input": [1], "target": 10**400})

    assert response.status_code == 400


def test_a_bad_prediction_id_in_the_admin_queue_is_a_message(api: ApiClient, seed_model, admin_client) -> None:
    response = admin_client.post(
        "/admin/reviews/reviewtask/label-queue/", {"model": "seed", "prediction_id": "abc", "label": "1"}, follow=True
    )

    assert response.status_code == 200
    assert "Choose a prediction" in response.content.decode()
