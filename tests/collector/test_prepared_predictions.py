"""Masking and labelling done before the write transaction are used only if the model's rules are unchanged in it;
a version read before it and deleted meanwhile is registered again inside it."""

from typing import Any

import pytest

from collector import services
from collector.models import ModelVersion, Prediction, RegisteredModel
from collector.services import Actor, PredictionIn, prediction_record_batch

pytestmark = pytest.mark.django_db
ACTOR = Actor(label="test")
EMAIL_TEXT = "write to ann@example.com"


def churn_with_version() -> RegisteredModel:
    """A model and the version the items name: with both stored, the work is prepared before the transaction."""
    model = RegisteredModel.objects.create(name="churn", task_type="binary")
    ModelVersion.objects.create(registered_model=model, version="v1")
    return model


def edit_model_between_preparing_and_writing(monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    prepare = services._prepare_predictions

    def prepare_then_edit(*args: Any, **kwargs: Any) -> Any:
        prepared = prepare(*args, **kwargs)
        assert prepared is not None
        RegisteredModel.objects.filter(name="churn").update(**changes)  # an admin saving meanwhile
        return prepared

    monkeypatch.setattr(services, "_prepare_predictions", prepare_then_edit)


def test_it_masks_by_the_rules_the_write_transaction_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    churn_with_version()
    edit_model_between_preparing_and_writing(monkeypatch, pii_mask_emails=False)

    prediction_record_batch(
        items=[PredictionIn(model="churn", version="v1", input=EMAIL_TEXT, prediction=n) for n in (1, 0)], actor=ACTOR
    )

    assert [row.input for row in Prediction.objects.all()] == ["write to ann@example.com"] * 2


def test_it_labels_by_the_task_type_the_write_transaction_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    churn_with_version()
    edit_model_between_preparing_and_writing(monkeypatch, task_type="regression")

    prediction_record_batch(
        items=[PredictionIn(model="churn", version="v1", input=n, prediction=1) for n in (1, 2)], actor=ACTOR
    )

    assert [row.predicted_label for row in Prediction.objects.all()] == ["", ""]  # regression has no class labels


def test_without_changes_the_prepared_work_is_what_is_stored() -> None:
    churn_with_version()

    prediction_record_batch(
        items=[PredictionIn(model="churn", version="v1", input=EMAIL_TEXT, prediction=n) for n in (1, 0)], actor=ACTOR
    )

    for stored in Prediction.objects.all():
        assert "ann@example.com" not in stored.input and stored.input.startswith("write to [masked:email:")
    assert sorted(row.predicted_label for row in Prediction.objects.all()) == ["0", "1"]


@pytest.mark.django_db(transaction=True)  # the foreign keys are checked when the write commits
@pytest.mark.parametrize("count", [1, 2])
def test_a_version_deleted_between_preparing_and_writing_is_registered_again(monkeypatch, count) -> None:
    model = churn_with_version()
    prepare = services._prepare_predictions

    def prepare_then_delete(*args: Any, **kwargs: Any) -> Any:
        prepared = prepare(*args, **kwargs)
        assert prepared is not None and prepared.versions
        ModelVersion.objects.filter(registered_model=model).delete()  # an admin deleting it meanwhile
        return prepared

    monkeypatch.setattr(services, "_prepare_predictions", prepare_then_delete)

    recorded = prediction_record_batch(
        items=[PredictionIn(model="churn", version="v1", input=n, prediction=1) for n in range(count)], actor=ACTOR
    )

    assert [row.created for row in recorded] == [True] * count
    version = ModelVersion.objects.get(registered_model=model, version="v1")
    assert Prediction.objects.filter(model_version=version).count() == count


def test_a_batch_naming_a_new_pair_of_stored_model_and_version_names_registers_that_version() -> None:
    first = RegisteredModel.objects.create(name="first", task_type="binary")
    second = RegisteredModel.objects.create(name="second", task_type="binary")
    for model, version in ((first, "v1"), (first, "v2"), (second, "v1")):
        ModelVersion.objects.create(registered_model=model, version=version)

    recorded = prediction_record_batch(
        items=[
            PredictionIn(model="first", version="v1", input=1, prediction=1),
            PredictionIn(model="second", version="v2", input=2, prediction=0),  # both names stored, not this pair
        ],
        actor=ACTOR,
    )

    assert [row.created for row in recorded] == [True, True]
    assert Prediction.objects.get(pk=recorded[1].id).model_version.version == "v2"
    assert ModelVersion.objects.filter(registered_model=second).count() == 2


# Models and versions a preparation read outside any transaction are remembered by the process, so the next one
# reads nothing; the write transaction still has the last word. These tests commit, as the web requests do.


def record(**fields: Any) -> services.Recorded:
    item = PredictionIn(model="churn", version="v1", input=EMAIL_TEXT, **fields)
    return services.prediction_record(item=item, actor=ACTOR)


@pytest.fixture
def remembered() -> Any:
    services._known_versions.models.clear()
    services._known_versions.versions.clear()
    yield services._known_versions
    services._known_versions.models.clear()
    services._known_versions.versions.clear()


@pytest.mark.django_db(transaction=True)
def test_a_write_outside_a_transaction_remembers_its_model_and_version(remembered) -> None:
    model = churn_with_version()

    record(prediction=1)

    assert remembered.models["churn"].pk == model.pk
    assert remembered.versions[(model.pk, "v1")].version == "v1"


@pytest.mark.django_db(transaction=True)
def test_rules_saved_after_a_write_apply_to_the_next_and_are_remembered_then(remembered) -> None:
    churn_with_version()
    record(prediction=1)  # remembered with its email masking on

    RegisteredModel.objects.filter(name="churn").update(pii_mask_emails=False)
    record(prediction=0)
    record(prediction=1, event_id="third")

    assert [row.input.startswith("write to [masked") for row in Prediction.objects.order_by("pk")] == [
        True, False, False
    ]  # fmt: skip
    assert remembered.models["churn"].pii_mask_emails is False


@pytest.mark.django_db(transaction=True)
def test_a_remembered_version_deleted_since_is_registered_again(remembered) -> None:
    model = churn_with_version()
    record(prediction=1)
    Prediction.objects.all().delete()
    ModelVersion.objects.filter(registered_model=model).delete()

    recorded = record(prediction=0)

    version = ModelVersion.objects.get(registered_model=model, version="v1")
    assert Prediction.objects.get(pk=recorded.id).model_version == version
    assert (model.pk, "v1") not in remembered.versions  # forgotten; the next preparation reads it again
    record(prediction=1, event_id="third")
    assert remembered.versions[(model.pk, "v1")].pk == version.pk


@pytest.mark.django_db(transaction=True)
def test_a_remembered_model_deleted_since_is_registered_again(remembered) -> None:
    churn_with_version()
    record(prediction=1)
    Prediction.objects.all().delete()
    ModelVersion.objects.all().delete()
    RegisteredModel.objects.all().delete()

    recorded = record(prediction=0)

    stored = Prediction.objects.select_related("registered_model", "model_version").get(pk=recorded.id)
    assert (stored.registered_model.name, stored.model_version.version) == ("churn", "v1")


def test_reads_inside_a_transaction_are_not_remembered(remembered) -> None:
    churn_with_version()

    record(prediction=1)  # pytest-django's test transaction is open: the rows could still be rolled back

    assert remembered.models == {} and remembered.versions == {}
