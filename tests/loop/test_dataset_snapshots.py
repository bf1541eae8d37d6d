"""The dataset snapshot: a retrain that reads the stored rows plus the rows labelled since gets exactly what a full
read gets (rows, order, targets, skip count, dataset hash), after new rows, late and changed outcomes, approved label
corrections and a retention purge; and it reads everything again whenever it cannot be sure."""

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.utils import timezone

from collector.models import Prediction, RegisteredModel
from collector.retention import retention_purge
from collector.services import Actor, OutcomeIn, PredictionIn, outcome_record_batch, prediction_record_batch
from loop import datasets, snapshots
from loop.artifacts import dataset_hash
from loop.datasets import Dataset, dataset_read, dataset_reading
from loop.trainers import trainer_from_spec
from reviews.services import correction_approve, correction_propose

pytestmark = pytest.mark.django_db
START = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
ACTOR = Actor(label="test")


@pytest.fixture(autouse=True)
def _own_var_dir(settings: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.VAR_DIR = tmp_path
    settings.FEEDBACKHUB_DATASET_SNAPSHOTS = True
    # No margin: only the stamps and ids decide what is read again (the margin would re-read every row of a test).
    monkeypatch.setattr(datasets, "SNAPSHOT_MARGIN", timedelta(0))


@pytest.fixture
def full_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = datasets._full_read

    def counted(registered_model: RegisteredModel, *, keep_keys: bool) -> Any:
        calls.append(registered_model.pk)
        return original(registered_model, keep_keys=keep_keys)

    monkeypatch.setattr(datasets, "_full_read", counted)
    return calls


class Rows:
    def __init__(self, name: str, task_type: str = "binary") -> None:
        self.model = RegisteredModel.objects.create(name=name, task_type=task_type)
        self.count = 0
        self.waiting = 0

    def add(self, minute: float, given: Any, actual: Any = None) -> int:
        self.count += 1
        item = PredictionIn(
            model=self.model.name, version="v1", input=given, prediction=0, actual=actual,
            event_id=f"e-{self.count}", timestamp=START + timedelta(minutes=minute),
        )  # fmt: skip
        [recorded] = prediction_record_batch(items=[item], actor=ACTOR)
        return recorded.id

    def outcome(self, prediction_id: int, actual: Any) -> None:
        outcome_record_batch(items=[OutcomeIn(actual=actual, prediction_id=prediction_id)], actor=ACTOR)


def reference(model: RegisteredModel) -> Dataset:
    return datasets._full_read(model, keep_keys=False).dataset()


def assert_same(read: Dataset, expected: Dataset) -> None:
    assert read.ids.tolist() == expected.ids.tolist()
    assert np.array_equal(read.inputs, expected.inputs) and read.inputs.dtype == np.float64
    assert read.targets.tolist() == expected.targets.tolist() and read.targets.dtype == expected.targets.dtype
    assert read.skipped == expected.skipped
    assert dataset_hash(ids=read.ids, inputs=read.inputs, targets=read.targets) == dataset_hash(
        ids=expected.ids, inputs=expected.inputs, targets=expected.targets
    )


@pytest.fixture
def rows() -> Rows:
    """Thirty-one 3-number rows with outcomes, two without, and rows of other shapes (skipped)."""
    rows = Rows("snap")
    for n in range(30):
        rows.add(n, [n / 10, (n * 7 % 11) / 10, n % 3], actual=n % 2)
    rows.waiting = rows.add(30.5, [1, 2, 3])
    rows.add(31.5, [4, 5, 6])
    rows.add(30.5, [7, 8, 9], actual=1)  # the same moment as the first waiting one
    rows.add(12.5, [1, 2], actual=1)
    rows.add(13.5, {"a": 1}, actual=0)
    return rows


def test_a_second_read_reads_the_snapshot_and_gets_what_a_full_read_gets(rows, full_reads) -> None:
    first = dataset_read(registered_model=rows.model)
    second = dataset_read(registered_model=rows.model)

    assert full_reads == [rows.model.pk]  # the first only
    assert_same(first, reference(rows.model))
    assert_same(second, reference(rows.model))
    assert len(second) == 31 and second.skipped == 2


def test_new_rows_late_and_changed_outcomes_and_corrections_are_read_again(rows, full_reads, django_user_model) -> None:
    dataset_read(registered_model=rows.model)
    ids = dataset_read(registered_model=rows.model).ids.tolist()
    rows.add(40, [9, 9, 9], actual=1)  # after every stored row
    rows.add(5.5, [5, 5, 5], actual=0)  # between stored rows
    rows.add(5.5, [6, 6, 6], actual=1)  # the same moment: by id
    unlabelled = rows.add(7.25, [7, 7, 7])
    rows.outcome(unlabelled, 1)  # an outcome arrives later
    rows.outcome(rows.waiting, 0)  # for a row as old as a stored one with a higher id: it goes first
    rows.outcome(ids[3], 1 - 3 % 2)  # an outcome changes
    reviewer = django_user_model.objects.create_user("reviewer")
    for row_id, label in [(ids[20], 1), (ids[3], 0)]:  # a correction wins over the outcome, even a later one
        prediction = Prediction.objects.get(pk=row_id)
        correction = correction_propose(
            registered_model=rows.model, kind="label", value=label, author=reviewer, prediction=prediction
        )
        correction_approve(correction=correction, user=reviewer)

    read = dataset_read(registered_model=rows.model)

    assert full_reads == [rows.model.pk]
    assert_same(read, reference(rows.model))
    assert len(read) == 36
    assert read.targets[read.ids.tolist().index(ids[20])] == "1"
    assert read.targets[read.ids.tolist().index(ids[3])] == "0"
    assert_same(dataset_read(registered_model=rows.model), reference(rows.model))


def test_a_retention_purge_makes_it_read_everything_once(rows, full_reads) -> None:
    dataset_read(registered_model=rows.model)
    RegisteredModel.objects.filter(pk=rows.model.pk).update(retention_days=1)
    rows.model.refresh_from_db()
    purged = retention_purge(registered_model=rows.model, now=START + timedelta(days=1, minutes=5))
    assert purged.predictions == 5

    read = dataset_read(registered_model=rows.model)
    again = dataset_read(registered_model=rows.model)

    assert full_reads == [rows.model.pk, rows.model.pk]  # the purge: once more, then the new snapshot
    assert_same(read, reference(rows.model))
    assert_same(again, reference(rows.model))
    assert len(read) == 26


def test_rows_of_another_width_taking_over_make_it_read_everything(rows, full_reads) -> None:
    dataset_read(registered_model=rows.model)
    for n in range(40):
        rows.add(50 + n, [n, n + 1], actual=n % 2)

    read = dataset_read(registered_model=rows.model)

    assert full_reads == [rows.model.pk, rows.model.pk]
    assert_same(read, reference(rows.model))
    assert read.inputs.shape == (41, 2)


def test_a_changed_task_type_or_a_missing_file_is_not_trusted(rows, full_reads) -> None:
    dataset_read(registered_model=rows.model)
    RegisteredModel.objects.filter(pk=rows.model.pk).update(task_type="multiclass")
    rows.model.refresh_from_db()

    read = dataset_read(registered_model=rows.model)
    assert len(full_reads) == 2
    assert_same(read, reference(rows.model))
    (datasets._snapshot_directory(rows.model) / "matrix.f8").write_bytes(b"")

    read = dataset_read(registered_model=rows.model)

    assert len(full_reads) == 4  # with the reference read
    assert_same(read, reference(rows.model))


def test_regression_targets_are_kept_as_floats(full_reads) -> None:
    rows = Rows("snap-regression", task_type="regression")
    for n in range(10):
        rows.add(n, [n, n * n], actual=n / 4)
    dataset_read(registered_model=rows.model)
    rows.add(3.5, [3, 3], actual=1.25)

    read = dataset_read(registered_model=rows.model)

    assert len(full_reads) == 1
    assert_same(read, reference(rows.model))
    assert read.targets.dtype == np.float64


def test_models_with_labelled_examples_or_snapshots_off_always_read_everything(rows, full_reads, settings) -> None:
    settings.FEEDBACKHUB_DATASET_SNAPSHOTS = False
    dataset_read(registered_model=rows.model)
    dataset_read(registered_model=rows.model)

    assert len(full_reads) == 2
    assert not (settings.VAR_DIR / "datasets").exists()


def test_a_stored_row_whose_target_stops_fitting_leaves_and_comes_back(rows, full_reads) -> None:
    dataset_read(registered_model=rows.model)
    ids = dataset_read(registered_model=rows.model).ids.tolist()
    # Not a path the services allow for a binary model; written directly, as a changed label rule would leave it.
    Prediction.objects.filter(pk=ids[5]).update(actual="maybe", actual_recorded_at=timezone.now())

    without = dataset_read(registered_model=rows.model)
    assert_same(without, reference(rows.model))
    assert ids[5] not in without.ids.tolist() and without.skipped == 3

    rows.outcome(ids[5], 1)
    back = dataset_read(registered_model=rows.model)

    assert full_reads.count(rows.model.pk) == 2  # the first read and the reference above
    assert_same(back, reference(rows.model))
    assert back.ids.tolist()[5] == ids[5] and back.skipped == 2


def test_the_snapshot_is_stored_while_the_block_runs_and_finished_when_it_ends(rows, full_reads) -> None:
    directory = datasets._snapshot_directory(rows.model)
    dataset_read(registered_model=rows.model)
    rows.add(40, [1, 1, 1], actual=1)

    with dataset_reading(registered_model=rows.model) as read:
        assert_same(read, reference(rows.model))
    assert (directory / "meta.json").exists()

    assert_same(dataset_read(registered_model=rows.model), reference(rows.model))
    assert full_reads.count(rows.model.pk) == 3  # the first read and the two references: no read of ours


def test_a_snapshot_that_cannot_be_stored_leaves_the_read_whole_and_the_next_one_reads_everything(
    rows, full_reads, monkeypatch, caplog
) -> None:
    dataset_read(registered_model=rows.model)
    rows.add(40, [1, 1, 1], actual=1)

    def disk_full(directory: Any, snapshot: Any) -> None:
        raise OSError(28, "No space left on device")

    commit = datasets.snapshot_commit
    monkeypatch.setattr(datasets, "snapshot_commit", disk_full)
    read = dataset_read(registered_model=rows.model)
    monkeypatch.setattr(datasets, "snapshot_commit", commit)

    assert_same(read, reference(rows.model))
    assert "Could not store the dataset snapshot" in caplog.text
    assert not (datasets._snapshot_directory(rows.model) / "meta.json").exists()
    before = len(full_reads)
    assert_same(dataset_read(registered_model=rows.model), reference(rows.model))
    assert len(full_reads) == before + 2  # the read and its reference


@pytest.mark.parametrize("span_bytes", [24 * 3 * 8, 8 * 1024 * 1024], ids=["many-spans", "one-span"])
def test_stored_rows_are_copied_to_their_places_in_short_and_long_runs(tmp_path, monkeypatch, span_bytes) -> None:
    monkeypatch.setattr(snapshots, "_SPAN_BYTES", span_bytes)
    monkeypatch.setattr(snapshots, "_LONG_RUN_BYTES", 40 * 3 * 8)
    stored = np.arange(300 * 3, dtype=np.float64).reshape(300, 3)
    (tmp_path / "matrix.f8").write_bytes(stored.tobytes())
    runs, position = [], 0
    for source in range(0, 300, 7):  # short runs with gaps (rows dropped) and new rows between them
        count = 50 if source in (70, 210) else 3
        runs.append((source, position, min(count, 300 - source)))
        position += min(count, 300 - source) + 2
    into = np.full((position, 3), -1.0)

    snapshots.snapshot_read_rows(tmp_path, width=3, into=into, runs=runs)

    expected = np.full_like(into, -1.0)
    for source, destination, count in runs:
        expected[destination : destination + count] = stored[source : source + count]
    assert np.array_equal(into, expected)


def test_an_estimator_allowed_to_work_in_place_changes_neither_the_rows_nor_the_stored_snapshot(full_reads) -> None:
    rows = Rows("snap-in-place", task_type="regression")
    for n in range(12):
        rows.add(n, [n, n * n + 5], actual=n / 3)
    trainer = trainer_from_spec(
        spec={"estimator": "sklearn.linear_model.Ridge", "params": {"copy_X": False}}, task_type="regression"
    )

    with dataset_reading(registered_model=rows.model) as read:  # a full read, stored while the model fits
        assert not read.inputs.flags.writeable
        trainer.fit(read.inputs, read.targets)
        assert_same(read, reference(rows.model))

    assert_same(dataset_read(registered_model=rows.model), reference(rows.model))
    assert full_reads.count(rows.model.pk) == 3  # the first read and the two references: the last read is stored
