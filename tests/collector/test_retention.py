from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command

from collector.models import Feedback, Prediction, RegisteredModel, VersionTally
from collector.retention import retention_purge
from collector.tasks import purge_expired_predictions
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db
NOW = datetime.now(UTC)


def keep_marked(registered_model: RegisteredModel):  # noqa: ANN201 - a retention protector for the tests
    return Prediction.objects.filter(registered_model=registered_model, attributes__keep=True).values("pk")


@pytest.fixture
def aged_data(api: ApiClient) -> RegisteredModel:
    bodies = [
        prediction_body(event_id=f"old-{n}", actual=1, timestamp=(NOW - timedelta(days=40)).isoformat())
        for n in range(7)
    ]
    bodies.append(
        prediction_body(
            event_id="old-kept", attributes={"keep": True}, timestamp=(NOW - timedelta(days=40)).isoformat()
        )
    )
    bodies += [prediction_body(event_id=f"new-{n}", timestamp=(NOW - timedelta(days=5)).isoformat()) for n in range(3)]
    api.post_json("/api/v1/predictions/", bodies)
    api.post_json(
        "/api/v1/predictions/", prediction_body(model="forever", timestamp=(NOW - timedelta(days=400)).isoformat())
    )
    api.post_json(
        "/api/v1/feedback/",
        [
            {
                "kind": "thumbs_up",
                "model": "churn",
                "interaction_id": "a",
                "timestamp": (NOW - timedelta(days=40)).isoformat(),
            },
            {"kind": "thumbs_up", "model": "churn", "interaction_id": "b"},
        ],
    )
    model = RegisteredModel.objects.get(name="churn")
    model.retention_days = 30
    model.save()
    return model


def test_it_deletes_rows_older_than_the_retention_in_chunks_and_keeps_the_rest(aged_data: RegisteredModel) -> None:
    progress: list[tuple[str, int]] = []

    result = retention_purge(registered_model=aged_data, chunk_size=3, on_progress=lambda *p: progress.append(p))

    assert (result.predictions, result.feedback) == (8, 1)
    assert set(Prediction.objects.filter(registered_model=aged_data).values_list("event_id", flat=True)) == {
        "new-0", "new-1", "new-2",
    }  # fmt: skip
    assert Prediction.objects.filter(registered_model__name="forever").count() == 1
    assert list(Feedback.objects.values_list("interaction_id", flat=True)) == ["b"]
    assert progress[:3] == [("predictions", 3), ("predictions", 6), ("predictions", 8)]


def test_quality_counters_are_a_lifetime_record_and_do_not_change(aged_data: RegisteredModel) -> None:
    before = list(VersionTally.objects.values_list("predictions", "outcomes", "correct"))

    retention_purge(registered_model=aged_data)

    assert list(VersionTally.objects.values_list("predictions", "outcomes", "correct")) == before


def test_rows_a_protector_needs_are_kept(aged_data: RegisteredModel, settings) -> None:
    settings.FEEDBACKHUB_RETENTION_PROTECTORS = ["tests.collector.test_retention.keep_marked"]

    result = retention_purge(registered_model=aged_data)

    assert result.predictions == 7
    assert Prediction.objects.filter(event_id="old-kept").exists()


def test_the_command_has_a_dry_run_and_reports(aged_data: RegisteredModel) -> None:
    out = StringIO()
    call_command("purge_predictions", "--dry-run", stdout=out, stderr=StringIO())
    assert "churn: would delete 8 predictions, 1 feedback" in out.getvalue()
    assert Prediction.objects.count() == 12

    call_command("purge_predictions", "--model", "churn", stdout=out, stderr=StringIO())
    assert "churn: deleted 8 predictions" in out.getvalue()
    assert Prediction.objects.count() == 4


def test_the_nightly_task_purges_every_model_with_a_retention(aged_data: RegisteredModel) -> None:
    results = purge_expired_predictions()

    assert results == [{"model": "churn", "predictions": 8, "feedback": 1, "pending_outcomes": 0}]
    assert purge_expired_predictions() == [{"model": "churn", "predictions": 0, "feedback": 0, "pending_outcomes": 0}]


def test_the_purge_is_on_the_beat_schedule() -> None:
    entry = settings.CELERY_BEAT_SCHEDULE["purge-expired-predictions"]
    assert entry["task"] == purge_expired_predictions.name


def test_rows_an_open_review_task_needs_are_kept_until_it_closes(api: ApiClient) -> None:
    from django.contrib.auth.models import User

    from reviews.models import ReviewTask
    from reviews.services import review_task_resolve

    old = (NOW - timedelta(days=40)).isoformat()
    prediction_id = api.post_json("/api/v1/predictions/", prediction_body(event_id="p", timestamp=old)).json()["id"]
    api.post_json("/api/v1/feedback/", {"kind": "thumbs_down", "prediction_id": prediction_id, "timestamp": old})
    model = RegisteredModel.objects.get(name="churn")
    model.retention_days = 30
    model.save()

    assert (retention_purge(registered_model=model).predictions, Feedback.objects.count()) == (0, 1)

    review_task_resolve(task=ReviewTask.objects.get(), user=User.objects.create(username="r"))
    result = retention_purge(registered_model=model)
    assert (result.predictions, result.feedback) == (1, 1)
