"""The dataset a training run reads: streamed in chunks, numeric vectors in one float64 matrix, and the same rows,
split, skip count and predictions as the plain list-of-rows reading it replaced (kept below as the reference)."""

import heapq
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from collector.labels import LabelError, label_for, numeric_value
from collector.models import ModelVersion, Prediction, RegisteredModel
from loop import datasets, services
from loop.artifacts import dataset_hash
from loop.datasets import Dataset, dataset_read
from loop.models import LabelledExample, RetrainPolicy, RunStatus
from loop.trainers import trainer_from_spec

pytestmark = pytest.mark.django_db
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def reference_rows(model: RegisteredModel) -> tuple[list[tuple[str, Any, Any]], int]:
    """The reading the streamed one replaced: every row as Python objects, then filtered by shape."""
    predictions = (
        (created, f"p{pk}", given, label if label is not None else actual)
        for created, pk, given, actual, label in Prediction.objects.filter(registered_model=model)
        .exclude(actual__isnull=True, training_label__isnull=True)
        .order_by("created_at", "pk")
        .values_list("created_at", "pk", "input", "actual", "training_label")
    )
    examples = (
        (created, f"e{pk}", given, target)
        for created, pk, given, target in LabelledExample.objects.filter(registered_model=model)
        .order_by("created_at", "pk")
        .values_list("created_at", "pk", "input", "target")
    )
    rows, skipped = [], 0
    for _, row_id, given, target in heapq.merge(predictions, examples, key=lambda row: (row[0], row[1])):
        try:
            canonical = numeric_value(target) if model.task_type == "regression" else label_for(model.task_type, target)
        except LabelError:
            skipped += 1
            continue
        rows.append((row_id, given, canonical, datasets.input_shape(given)))
    shapes = Counter(shape for *_, shape in rows if shape != datasets.UNUSABLE)
    common = shapes.most_common(1)[0][0]
    kept = [(row_id, given, target) for row_id, given, target, shape in rows if shape == common]
    return kept, skipped + len(rows) - len(kept)


def as_rows(dataset: Dataset) -> list[tuple[str, Any, Any]]:
    names = [f"p{row_id}" if row_id > 0 else f"e{-row_id}" for row_id in dataset.ids.tolist()]
    inputs = dataset.inputs.tolist() if isinstance(dataset.inputs, np.ndarray) else dataset.inputs
    return list(zip(names, inputs, dataset.targets.tolist(), strict=True))


class Store:
    """Labelled rows at chosen minutes after START, predictions and examples interleaved."""

    def __init__(self, model: RegisteredModel) -> None:
        self.model = model
        self.version = ModelVersion.objects.create(registered_model=model, version="v1")
        self.count = 0

    def prediction(self, minute: float, given: Any, actual: Any = None, label: Any = None) -> None:
        self.count += 1
        moment = START + timedelta(minutes=minute)
        Prediction.objects.create(
            registered_model=self.model, model_version=self.version, event_id=f"e-{self.count}", created_at=moment,
            input=given, prediction=0, actual=actual, training_label=label, payload_sha256="x",
        )  # fmt: skip

    def example(self, minute: float, given: Any, target: Any) -> None:
        example = LabelledExample.objects.create(registered_model=self.model, input=given, target=target, actor="t")
        LabelledExample.objects.filter(pk=example.pk).update(created_at=START + timedelta(minutes=minute))


@pytest.fixture
def mixed() -> RegisteredModel:
    """Mostly 3-number vectors; a wrong-length vector, a dict, a vector holding true, targets that do not fit,
    approved labels that override outcomes, an unlabelled prediction, and an example and a prediction at the
    same moment."""
    model = RegisteredModel.objects.create(name="mixed", task_type="binary")
    RetrainPolicy.objects.create(registered_model=model, holdout_share=0.25)
    store = Store(model)
    for n in range(40):
        x, y = (n * 7 % 11) / 10, (n * 5 % 13) / 12
        vector = [x, y, n % 3]
        if n % 3 == 0:
            store.example(n, vector, int(x + y > 1))
        elif n % 3 == 1:
            store.prediction(n, vector, actual=int(x + y > 1))
        else:  # an approved training label wins over a wrong outcome
            store.prediction(n, vector, actual=int(x + y <= 1), label=int(x + y > 1))
    store.prediction(10.5, [1, 2], actual=1)
    store.prediction(11.5, {"a": 1}, actual=0)
    store.example(12.5, [0.5, True, 1], 1)
    store.example(13.5, [0.5, 0.5, 1], "maybe")
    store.prediction(14.5, [0.5, 0.5, 1], actual="maybe", label=None)
    store.prediction(15.5, [0.5, 0.5, 1], actual=None)  # no outcome: not labelled
    store.example(20.25, [1e-5, 2.5e10, -3], True)
    store.prediction(20.25, [0.25, 0.75, 2], actual=False)
    return model


@pytest.mark.parametrize("chunk", [3, 5000])
def test_it_reads_the_same_rows_and_skips_as_the_reference(mixed, monkeypatch, chunk: int) -> None:
    monkeypatch.setattr(datasets, "CHUNK", chunk)
    expected, skipped = reference_rows(mixed)

    dataset = dataset_read(registered_model=mixed)

    assert as_rows(dataset) == expected
    assert dataset.skipped == skipped == 5
    assert isinstance(dataset.inputs, np.ndarray) and dataset.inputs.dtype == np.float64
    assert dataset.inputs.shape == (42, 3) and dataset.inputs.flags.c_contiguous
    assert set(dataset.targets.tolist()) == {"0", "1"}


def test_the_holdout_is_the_newest_rows_and_no_copy(mixed) -> None:
    expected, _ = reference_rows(mixed)
    dataset = dataset_read(registered_model=mixed)

    train, holdout = dataset.split(holdout_count=10)

    assert as_rows(train) == expected[:-10] and as_rows(holdout) == expected[-10:]
    assert np.shares_memory(train.inputs, dataset.inputs) and np.shares_memory(holdout.inputs, dataset.inputs)


def test_a_run_trains_scores_and_hashes_as_the_reference_rows_say(mixed) -> None:
    expected, skipped = reference_rows(mixed)
    holdout_count = int(len(expected) * 0.25)
    train, holdout = expected[:-holdout_count], expected[-holdout_count:]
    reference = trainer_from_spec(spec={}, task_type="binary")
    reference.fit([given for _, given, _ in train], [target for *_, target in train])

    run, _ = services.retrain_request(registered_model=mixed, trigger="test")
    run = services.training_run_execute(run_id=run.pk)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert (run.train_count, run.holdout_count) == (len(train), holdout_count)
    assert f"; {skipped} labelled examples skipped" in run.decision
    champion = services._trainer_of(run.candidate_version, "binary")
    holdout_inputs = [given for _, given, _ in holdout]
    assert champion.predict(holdout_inputs) == reference.predict(holdout_inputs)
    assert run.dataset_sha256 == dataset_hash(
        ids=np.array([int(row_id[1:]) * (1 if row_id[0] == "p" else -1) for row_id, _, _ in train]),
        inputs=np.array([given for _, given, _ in train], dtype=np.float64),
        targets=np.array([target for *_, target in train], dtype=object),
    )


def test_the_most_common_shape_wins_even_when_another_came_first(monkeypatch) -> None:
    monkeypatch.setattr(datasets, "CHUNK", 4)
    model = RegisteredModel.objects.create(name="shapes", task_type="multiclass")
    store = Store(model)
    for n in range(3):
        store.example(n, [n, n], "a")
    for n in range(6):
        store.prediction(10 + n, [n, n + 1, n + 2], actual=["a", "b"][n % 2])

    dataset = dataset_read(registered_model=model)

    assert as_rows(dataset) == reference_rows(model)[0]
    assert dataset.inputs.shape == (6, 3) and dataset.skipped == 3


def test_empty_lists_and_numbers_too_large_are_skipped(monkeypatch) -> None:
    monkeypatch.setattr(datasets, "CHUNK", 3)
    model = RegisteredModel.objects.create(name="edges", task_type="binary")
    store = Store(model)
    for n in range(3):
        store.prediction(n, [], actual=1)
    for n in range(3, 6):
        store.prediction(n, [1e301, 1], actual=1)
    for n in range(6, 12):
        store.prediction(n, [n, 10**20], actual=n % 2)

    dataset = dataset_read(registered_model=model)

    assert as_rows(dataset) == reference_rows(model)[0]
    assert dataset.inputs.shape == (6, 2) and dataset.skipped == 6


@pytest.mark.parametrize(
    ("inputs", "expected_type"),
    [([{"plan": "basic", "n": 1}, {"plan": "pro"}, [1.0]], dict), (["great", "awful", 3], str)],
)
def test_objects_and_text_keep_working_as_json_values(inputs: list, expected_type: type) -> None:
    model = RegisteredModel.objects.create(name="json", task_type="regression")
    store = Store(model)
    for n, given in enumerate(inputs * 3):
        store.prediction(n, given, actual=float(n))
    store.example(100, inputs[0], "not a number")

    dataset = dataset_read(registered_model=model)

    assert as_rows(dataset) == reference_rows(model)[0]
    assert all(isinstance(given, expected_type) for given in dataset.inputs)
    assert dataset.targets.dtype == np.float64 and dataset.skipped == 4


def test_the_matrix_grows_in_place_when_rows_keep_coming(mixed, monkeypatch) -> None:
    monkeypatch.setattr(datasets, "INITIAL_ROWS", 2)
    monkeypatch.setattr(datasets, "CHUNK", 5)

    dataset = dataset_read(registered_model=mixed)

    assert as_rows(dataset) == reference_rows(mixed)[0]
    assert dataset.inputs.flags.c_contiguous


def test_a_trainer_from_another_framework_gets_the_matrix_in_a_run(mixed, settings) -> None:
    settings.FEEDBACKHUB_TRAINERS = {"centroid": "tests.loop.centroid_trainer.CentroidTrainer"}
    RetrainPolicy.objects.filter(registered_model=mixed).update(trainer_spec={"trainer": "centroid"})

    run, _ = services.retrain_request(registered_model=mixed, trigger="test")
    run = services.training_run_execute(run_id=run.pk)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.candidate_version.artifact.description["trainer"] == "centroid"
