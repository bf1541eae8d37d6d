"""Masking and labelling done before the write transaction are used only if the model's rules are unchanged in it."""

from typing import Any

import pytest

from collector import services
from collector.models import Prediction, RegisteredModel
from collector.services import Actor, PredictionIn, prediction_record_batch

pytestmark = pytest.mark.django_db
ACTOR = Actor(label="test")
EMAIL_TEXT = "write to ann@example.com"


def edit_model_between_preparing_and_writing(monkeypatch: pytest.MonkeyPatch, **changes: Any) -> None:
    prepare = services._prepare_predictions

    def prepare_then_edit(*args: Any, **kwargs: Any) -> Any:
        prepared = prepare(*args, **kwargs)
        assert prepared is not None
        RegisteredModel.objects.filter(name="churn").update(**changes)  # an admin saving meanwhile
        return prepared

    monkeypatch.setattr(services, "_prepare_predictions", prepare_then_edit)


def test_it_masks_by_the_rules_the_write_transaction_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    RegisteredModel.objects.create(name="churn", task_type="binary")
    edit_model_between_preparing_and_writing(monkeypatch, pii_mask_emails=False)

    prediction_record_batch(
        items=[PredictionIn(model="churn", version="v1", input=EMAIL_TEXT, prediction=n) for n in (1, 0)], actor=ACTOR
    )

    assert [row.input for row in Prediction.objects.all()] == ["write to ann@example.com"] * 2


def test_it_labels_by_the_task_type_the_write_transaction_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    RegisteredModel.objects.create(name="churn", task_type="binary")
    edit_model_between_preparing_and_writing(monkeypatch, task_type="regression")

    prediction_record_batch(
        items=[PredictionIn(model="churn", version="v1", input=n, prediction=1) for n in (1, 2)], actor=ACTOR
    )

    assert [row.predicted_label for row in Prediction.objects.all()] == ["", ""]  # regression has no class labels


def test_without_changes_the_prepared_work_is_what_is_stored() -> None:
    RegisteredModel.objects.create(name="churn", task_type="binary")

    prediction_record_batch(
        items=[PredictionIn(model="churn", version="v1", input=EMAIL_TEXT, prediction=n) for n in (1, 0)], actor=ACTOR
    )

    for stored in Prediction.objects.all():
        assert "ann@example.com" not in stored.input and stored.input.startswith("write to [masked:email:")
    assert sorted(row.predicted_label for row in Prediction.objects.all()) == ["0", "1"]
