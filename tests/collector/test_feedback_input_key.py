"""Feedback carries the hash of its prediction's input, so insights group it by input without a join."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from collector.models import Feedback, Prediction, RegisteredModel
from collector.payloads import fingerprint
from collector.services import Actor, FeedbackIn, PredictionIn, feedback_record_batch, prediction_record_batch

pytestmark = pytest.mark.django_db
ACTOR = Actor(label="test")
INPUT = {"question": "reset password", "lang": "en"}


@pytest.fixture(autouse=True)
def bot() -> RegisteredModel:
    return RegisteredModel.objects.create(name="bot", task_type="binary")


def predict(event_id: str, input: object = INPUT) -> Prediction:
    [recorded] = prediction_record_batch(
        items=[PredictionIn(model="bot", version="v1", input=input, prediction=1, event_id=event_id)], actor=ACTOR
    )
    return Prediction.objects.get(pk=recorded.id)


def give_feedback(**fields: object) -> Feedback:
    [recorded] = feedback_record_batch(items=[FeedbackIn(kind="thumbs_down", model="bot", **fields)], actor=ACTOR)
    return Feedback.objects.get(pk=recorded.id)


def test_feedback_on_a_stored_prediction_is_keyed_by_its_input() -> None:
    prediction = predict("p-1")

    by_id = give_feedback(prediction_id=prediction.pk)
    by_event = give_feedback(prediction_event_id="p-1")

    assert by_id.input_sha256 == by_event.input_sha256 == fingerprint(INPUT)
    assert give_feedback(interaction_id="chat-1").input_sha256 == ""


def test_equal_inputs_share_a_key_whatever_their_key_order() -> None:
    first = give_feedback(prediction_id=predict("p-1", {"a": 1, "b": [1, 2]}).pk)
    second = give_feedback(prediction_id=predict("p-2", {"b": [1, 2], "a": 1}).pk)
    other = give_feedback(prediction_id=predict("p-3", {"a": 2, "b": [1, 2]}).pk)

    assert first.input_sha256 == second.input_sha256 != other.input_sha256


def test_feedback_sent_before_its_prediction_is_keyed_when_the_prediction_arrives() -> None:
    early = give_feedback(prediction_event_id="late-1")
    unrelated = give_feedback(prediction_event_id="never")
    assert (early.prediction_id, early.input_sha256) == (None, "")

    prediction = predict("late-1")

    early.refresh_from_db()
    unrelated.refresh_from_db()
    assert (early.prediction_id, early.input_sha256) == (prediction.pk, fingerprint(INPUT))
    assert (unrelated.prediction_id, unrelated.input_sha256) == (None, "")


def test_the_rebuild_command_keys_feedback_linked_without_a_key() -> None:
    prediction = predict("p-1")
    linked_by_an_older_release = give_feedback(prediction_id=prediction.pk)
    Feedback.objects.filter(pk=linked_by_an_older_release.pk).update(input_sha256="")
    out = StringIO()

    call_command("rebuild_quality_counters", stdout=out)

    linked_by_an_older_release.refresh_from_db()
    assert linked_by_an_older_release.input_sha256 == fingerprint(INPUT)
    assert "Keyed 1 feedback item(s)" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_migration_keys_feedback_linked_before_it() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([("collector", "0009_drift_watermark_and_confidence_backfill")])
    old = executor.loader.project_state([("collector", "0009_drift_watermark_and_confidence_backfill")]).apps
    model = old.get_model("collector", "RegisteredModel").objects.get(name="bot")
    version = old.get_model("collector", "ModelVersion").objects.create(registered_model=model, version="v1")
    prediction = old.get_model("collector", "Prediction").objects.create(
        registered_model=model, model_version=version, event_id="p-1", created_at="2026-12-01T00:00:00Z",
        input=INPUT, prediction=1, payload_sha256="x",
    )  # fmt: skip
    old_feedback = old.get_model("collector", "Feedback")
    common = {"registered_model": model, "kind": "thumbs_down", "created_at": "2026-12-01T00:00:00Z", "actor": "t"}
    linked = old_feedback.objects.create(prediction=prediction, event_id="f-1", payload_sha256="x", **common)
    unlinked = old_feedback.objects.create(event_id="f-2", payload_sha256="x", **common)

    call_command("migrate", verbosity=0)

    keys = dict(Feedback.objects.values_list("pk", "input_sha256"))
    assert keys == {linked.pk: fingerprint(INPUT), unlinked.pk: ""}


def test_an_older_release_that_does_not_know_the_key_can_still_store_feedback(bot: RegisteredModel) -> None:
    table = Feedback._meta.db_table
    columns = "registered_model_id, prediction_event_id, interaction_id, kind, comment, source, event_id, created_at, "
    columns += "received_at, actor, payload_sha256"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({columns}) VALUES (%s, '', '', 'thumbs_down', '', '', 'old-1', %s, %s, 'old', 'x')",  # noqa: S608
            [bot.pk, "2026-12-01 00:00:00", "2026-12-01 00:00:00"],
        )

    assert Feedback.objects.get(event_id="old-1").input_sha256 == ""
