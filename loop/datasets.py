"""The labelled examples a training run learns from, read from the database in chunks, oldest first.

Inputs that are lists of numbers (the common case) are decoded a chunk at a time straight into one float64 matrix,
so a run on a million rows holds that matrix and little else; objects, text and single numbers stay JSON values in
a list.

Those numeric rows are also kept on disk (`loop.snapshots`), so the next run reads again only the rows labelled
since: new predictions, outcomes attached or changed, approved label corrections. What it reads is the same as a
full read gives, or it reads everything (see `_read_with_snapshot`).
"""

import gc
import hashlib
import heapq
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import islice, repeat
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Func, QuerySet, TextField, Value
from django.db.models.functions import Cast, Coalesce, NullIf
from django.utils import timezone

from collector.labels import LabelError, label_for, numeric_value
from collector.models import LABELLED, Prediction, RegisteredModel, TaskType
from loop.models import LabelledExample
from loop.snapshots import (
    Snapshot,
    snapshot_commit,
    snapshot_discard,
    snapshot_load,
    snapshot_lock,
    snapshot_matrix,
    snapshot_read_rows,
    snapshot_write,
    snapshot_write_rows,
)
from loop.trainers import label_array

logger = logging.getLogger(__name__)

CHUNK = 5000
INITIAL_ROWS = 65_536
MAX_INPUT_NUMBER = 1e300
Shape = tuple[str, ...] | tuple[str, int]
UNUSABLE: Shape = ("unusable",)
# In JSON text holding only arrays of numbers none of these characters can appear: they start strings, objects,
# true/false/null, NaN and Infinity.
_NOT_IN_NUMBER_LISTS = '"{tfnNI'
_TARGET_MEMO_LIMIT = 10_000
# A row labelled this long before the snapshot's read began is read again: a transaction that stamped it may have
# committed after that read, and app servers' clocks differ a little.
SNAPSHOT_MARGIN = timedelta(minutes=10)
SNAPSHOT_VENDORS = frozenset({"sqlite", "postgresql"})


@dataclass(frozen=True)
class Dataset:
    """Usable labelled rows in time order. `ids` holds a prediction's pk, or minus a labelled example's pk."""

    ids: np.ndarray
    inputs: np.ndarray | list[Any]
    targets: np.ndarray
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    def split(self, *, holdout_count: int) -> tuple["Dataset", "Dataset"]:
        """(older rows, the newest `holdout_count`), as views: nothing is copied."""
        cut = max(0, len(self) - holdout_count)
        return self._rows(slice(None, cut)), self._rows(slice(cut, None))

    def _rows(self, part: slice) -> "Dataset":
        return Dataset(ids=self.ids[part], inputs=self.inputs[part], targets=self.targets[part])


def labelled_predictions(registered_model: RegisteredModel) -> QuerySet:
    return Prediction.objects.filter(LABELLED, registered_model=registered_model)


def labelled_examples(registered_model: RegisteredModel) -> QuerySet:
    return LabelledExample.objects.filter(registered_model=registered_model)


def dataset_read(*, registered_model: RegisteredModel) -> Dataset:
    """Every labelled row whose target fits the task and whose input has the most common shape; the rest skipped."""
    with dataset_reading(registered_model=registered_model) as dataset:
        return dataset


@contextmanager
def dataset_reading(*, registered_model: RegisteredModel) -> Iterator[Dataset]:
    """The dataset of `dataset_read`, whose snapshot is stored on a side thread while the body runs (a training run
    fits meanwhile) and finished before the block ends."""
    directory = _snapshot_directory(registered_model)
    if directory is None:
        yield _full_read(registered_model, keep_keys=False).dataset()
        return
    with snapshot_lock(directory) as held:
        if not held:  # another process reads this model's rows now (never in one deployment: one run per model)
            yield _full_read(registered_model, keep_keys=False).dataset()
            return
        dataset, store = _read_through_snapshot(registered_model, directory)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshot-store") as storing:
            stored = storing.submit(_stored, directory, store)
            try:
                yield dataset
            finally:
                stored.result()


def _stored(directory: Path, store: Callable[[], None]) -> None:
    try:
        store()
    except OSError:  # a full disk must not fail the run: the next one reads everything again
        logger.warning("Could not store the dataset snapshot in %s", directory, exc_info=True)
        snapshot_discard(directory)


def _full_read(registered_model: RegisteredModel, *, keep_keys: bool) -> "_RowCollector":
    rows = _RowCollector(task_type=registered_model.task_type, keep_keys=keep_keys)
    with _cyclic_gc_paused():
        for chunk in _labelled_chunks(registered_model, with_keys=keep_keys):
            rows.add(chunk)
    return rows


def _snapshot_directory(registered_model: RegisteredModel) -> Path | None:
    """Where the model's snapshot lives, or None when its rows are read in full every time: snapshots turned off, a
    database without a time-key expression here, or labelled examples besides predictions (they are few, and their
    merge by time is kept in one place, the full read)."""
    if not settings.FEEDBACKHUB_DATASET_SNAPSHOTS or connection.vendor not in SNAPSHOT_VENDORS:
        return None
    if labelled_examples(registered_model).exists():
        return None
    database = connection.settings_dict
    place = f"{connection.vendor}:{database['HOST']}:{database['PORT']}:{database['NAME']}"
    tag = hashlib.sha256(place.encode()).hexdigest()[:12]
    return Path(settings.VAR_DIR) / "datasets" / f"{tag}-model-{registered_model.pk}"


def _snapshot_identity(registered_model: RegisteredModel) -> dict[str, Any]:
    # The model's creation time tells a model from another that got the same id (a database restored or reset).
    return {
        "model": registered_model.pk,
        "created_at": registered_model.created_at.isoformat(),
        "task_type": registered_model.task_type,
    }


def _read_through_snapshot(registered_model: RegisteredModel, directory: Path) -> tuple[Dataset, Callable[[], None]]:
    """The dataset, and what stores its snapshot for the next run."""
    identity = _snapshot_identity(registered_model)
    with _consistent_read():
        read_at = timezone.now()
        snapshot = snapshot_load(directory, identity=identity)
        update = None
        if snapshot is not None:
            update = _read_with_snapshot(registered_model, snapshot, directory=directory, read_at=read_at)
        full = _full_read(registered_model, keep_keys=True) if update is None else None
    if full is not None:
        dataset, kept = full.dataset(), full.snapshot(identity=identity, read_at=read_at)
        if kept is None:
            return dataset, lambda: snapshot_discard(directory)
        return dataset, lambda: snapshot_write(directory, kept, rows=dataset.inputs, first_row=0)
    try:
        snapshot_write_rows(directory, width=update.snapshot.width, rows=update.tail, first_row=update.first_row)
        inputs = snapshot_matrix(directory, rows=len(update.snapshot), width=update.snapshot.width)
    except OSError:
        logger.warning("Could not update the dataset snapshot in %s; reading every row", directory, exc_info=True)
        snapshot_discard(directory)
        return _full_read(registered_model, keep_keys=False).dataset(), lambda: None
    targets = _decoded_targets(update.snapshot.targets, update.snapshot.labels)
    dataset = Dataset(ids=update.snapshot.ids, inputs=inputs, targets=targets, skipped=len(update.snapshot.skipped))
    return dataset, lambda: snapshot_commit(directory, update.snapshot)


@contextmanager
def _consistent_read() -> Iterator[None]:
    """On PostgreSQL, one view of the tables for the snapshot's reads and count. Not on SQLite, whose transactions
    here take the write lock (IMMEDIATE) and would hold up every write for a full read: each statement is its own
    view there; a row written or deleted between the reads and the count makes the count differ (a full read), and
    a deletion and an insertion that cancel out in between are caught by the next run's count."""
    if connection.vendor != "postgresql":
        yield
        return
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost:
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


@dataclass(frozen=True)
class _Update:
    snapshot: Snapshot  # the rows now
    tail: np.ndarray  # the inputs from first_row on; the stored matrix already holds the ones before
    first_row: int


def _read_with_snapshot(
    registered_model: RegisteredModel, snapshot: Snapshot, *, directory: Path, read_at: datetime
) -> _Update | None:
    """The snapshot brought up to date with the rows labelled since it was made; None when only a full read can tell.

    Inputs and times of stored predictions never change (collected data is a record), so a row read again keeps its
    place and only its target may change. The rows read again: ids above the snapshot's highest, and rows whose
    outcome or approved label was stamped since (SNAPSHOT_MARGIN before) its read. Rows deleted since (retention
    purge) or missed show as a count of labelled rows that differs from the rows accounted for: then None."""
    fresh = _fresh_rows(registered_model, snapshot)
    usable_ids, keys, matrix, targets = fresh.matrix_rows()
    skipped_ids = fresh.skipped_row_ids()
    touched = np.concatenate([usable_ids, skipped_ids])
    codes, labels = snapshot.targets.copy(), None if snapshot.labels is None else list(snapshot.labels)
    kept = np.ones(len(snapshot), dtype=bool)
    inserted = np.ones(len(usable_ids), dtype=bool)
    if len(touched):
        position_of = {row_id: index for index, row_id in enumerate(usable_ids.tolist())}
        for stored in np.flatnonzero(np.isin(snapshot.ids, touched, kind="table")).tolist():
            index = position_of.get(int(snapshot.ids[stored]))
            if index is None:  # its new target does not fit
                kept[stored] = False
            else:
                codes[stored] = _target_code(targets[index], labels)
                inserted[index] = False
    still_skipped = snapshot.skipped[~np.isin(snapshot.skipped, touched)] if len(touched) else snapshot.skipped
    skipped = np.concatenate([still_skipped, skipped_ids])
    usable = int(kept.sum() + inserted.sum())
    # More usable rows than skipped ones of all shapes together: the most common shape is still the snapshot's.
    if _labelled_count(registered_model) != usable + len(skipped) or usable <= len(skipped):
        return None
    new = np.flatnonzero(inserted)
    new = new[np.lexsort((usable_ids[new], keys[new]))]
    new_codes = np.array([_target_code(targets[index], labels) for index in new.tolist()], dtype=codes.dtype)
    merged = _merge(snapshot, kept=kept, new_ids=usable_ids[new], new_keys=keys[new])
    first = merged.unchanged_rows
    tail = np.empty((usable - first, snapshot.width))
    runs = [
        (source + max(0, first - position), max(0, position - first), count - max(0, first - position))
        for source, position, count in merged.runs
        if position + count > first
    ]
    snapshot_read_rows(directory, width=snapshot.width, into=tail, runs=runs)
    if len(new):
        tail[merged.new_positions - first] = matrix[new]
    ids = np.empty(usable, np.int64)
    ids[merged.kept_positions], ids[merged.new_positions] = snapshot.ids[kept], usable_ids[new]
    row_keys = np.empty(usable, np.int64)
    row_keys[merged.kept_positions], row_keys[merged.new_positions] = snapshot.keys[kept], keys[new]
    row_codes = np.empty(usable, codes.dtype)
    row_codes[merged.kept_positions], row_codes[merged.new_positions] = codes[kept], new_codes
    updated = Snapshot(
        identity=snapshot.identity,
        read_at=read_at,
        watermark=max([snapshot.watermark, fresh.max_id]),
        width=snapshot.width,
        ids=ids,
        keys=row_keys,
        targets=row_codes,
        skipped=skipped,
        labels=labels,
    )
    return _Update(snapshot=updated, tail=tail, first_row=first)


def _fresh_rows(registered_model: RegisteredModel, snapshot: Snapshot) -> "_RowCollector":
    since = snapshot.read_at - SNAPSHOT_MARGIN
    labelled = labelled_predictions(registered_model)
    rows = _RowCollector(task_type=registered_model.task_type, width=snapshot.width, keep_keys=True)
    seen: set[int] = set()
    # Three queries, each on its own index, where one over an OR would read all of the model's rows; a row found by
    # two of them is taken once.
    for part in (
        labelled.filter(pk__gt=snapshot.watermark),
        labelled.filter(actual_recorded_at__gte=since),
        labelled.filter(training_label_at__gte=since),
    ):
        for chunk in _prediction_chunks(registered_model, with_times=False, with_keys=True, rows=part):
            unseen = [index for index, row_id in enumerate(chunk.ids) if row_id not in seen]
            seen.update(chunk.ids)
            if len(unseen) < len(chunk.ids):
                chunk = _Chunk(
                    times=(),
                    ids=[chunk.ids[i] for i in unseen],
                    inputs=[chunk.inputs[i] for i in unseen],
                    targets=[chunk.targets[i] for i in unseen],
                    keys=chunk.keys[unseen],
                )
            rows.add(chunk)
    return rows


def _labelled_count(registered_model: RegisteredModel) -> int:
    """The model's labelled predictions, counted on the two partial indexes of the outcome and label stamps (every
    write of an outcome or an approved label stamps it)."""
    predictions = Prediction.objects.filter(registered_model=registered_model)
    outcomes = predictions.filter(actual_recorded_at__isnull=False).count()
    return outcomes + predictions.filter(training_label_at__isnull=False, actual_recorded_at__isnull=True).count()


@dataclass(frozen=True)
class _Merge:
    kept_positions: np.ndarray  # where each kept stored row goes
    new_positions: np.ndarray  # where each new row goes
    runs: list[tuple[int, int, int]]  # (first stored row, first position, count) of consecutive kept rows
    unchanged_rows: int  # leading positions that hold the stored rows of the same positions


def _merge(snapshot: Snapshot, *, kept: np.ndarray, new_ids: np.ndarray, new_keys: np.ndarray) -> _Merge:
    """Where kept stored rows and new rows (sorted by time, then id) go, in time then id order."""
    stored = np.flatnonzero(kept)
    kept_keys, kept_ids = snapshot.keys[stored], snapshot.ids[stored]
    at = np.searchsorted(kept_keys, new_keys, side="left")
    for index in range(len(at)):  # equal times go by id; rare, so one row at a time
        while at[index] < len(kept_keys) and (kept_keys[at[index]], kept_ids[at[index]]) < (
            new_keys[index],
            new_ids[index],
        ):
            at[index] += 1
    new_positions = at + np.arange(len(at))
    is_new = np.zeros(len(stored) + len(at), dtype=bool)
    is_new[new_positions] = True
    kept_positions = np.flatnonzero(~is_new)
    runs = []
    if len(stored):
        breaks = np.flatnonzero((np.diff(stored) != 1) | (np.diff(kept_positions) != 1)) + 1
        starts, ends = np.concatenate([[0], breaks]), np.concatenate([breaks, [len(stored)]])
        runs = [
            (int(stored[start]), int(kept_positions[start]), int(end - start))
            for start, end in zip(starts.tolist(), ends.tolist(), strict=True)
        ]
    removed = np.flatnonzero(~kept)
    first_change = min([len(is_new), *removed[:1].tolist(), *new_positions[:1].tolist()])
    return _Merge(kept_positions=kept_positions, new_positions=new_positions, runs=runs, unchanged_rows=first_change)


def _target_code(target: Any, labels: list[str] | None) -> Any:
    """A class label's index in `labels` (added when new), or a float target itself."""
    if labels is None:
        return target
    try:
        return labels.index(target)
    except ValueError:
        labels.append(target)
        return len(labels) - 1


def _decoded_targets(codes: np.ndarray, labels: list[str] | None) -> np.ndarray:
    if labels is None:
        return codes.astype(np.float64, copy=False)
    # The width of the labels in use, as a full read's array of the same rows has (a label list only grows).
    used = [labels[code] for code in np.flatnonzero(np.bincount(codes, minlength=len(labels))).tolist()]
    return np.array(labels, dtype=label_array(used).dtype)[codes] if labels else label_array([])


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    # Each decoded chunk allocates thousands of lists, and so sets off collection passes that walk every object
    # alive: that took longer than reading and decoding together. The rows make no cycles; refcounting frees them.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def input_shape(value: Any) -> Shape:
    """What kind of features an input makes; training uses the inputs of the most common shape."""
    if (
        isinstance(value, list)
        and value
        and all(isinstance(x, int | float) and not isinstance(x, bool) and abs(x) < MAX_INPUT_NUMBER for x in value)
    ):
        return ("numbers", len(value))
    if isinstance(value, dict):
        return ("object",)
    if isinstance(value, str):
        return ("text",)
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) < MAX_INPUT_NUMBER:
        return ("number",)
    return UNUSABLE


# --- reading ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Chunk:
    """Rows in columns: times (only to merge the two sources), row ids, inputs and targets as JSON text, and
    (for a snapshot) times as microseconds since the epoch."""

    times: Sequence[str]
    ids: Sequence[int]
    inputs: Sequence[str]
    targets: Sequence[str | None]
    keys: np.ndarray | None = None


def _labelled_chunks(registered_model: RegisteredModel, *, with_keys: bool = False) -> Iterator[_Chunk]:
    if not labelled_examples(registered_model).exists():  # one source: nothing to merge, no times needed
        yield from _prediction_chunks(registered_model, with_times=False, with_keys=with_keys)
        return
    if not labelled_predictions(registered_model).exists():
        yield from _example_chunks(registered_model, with_times=False)
        return
    # Rank 0 before 1: at equal times labelled examples come before predictions.
    merged = heapq.merge(
        _rows(_example_chunks(registered_model, with_times=True), rank=0),
        _rows(_prediction_chunks(registered_model, with_times=True), rank=1),
        key=lambda row: row[:2],
    )
    while rows := list(islice(merged, CHUNK)):
        times, _, ids, inputs, targets = zip(*rows, strict=True)
        yield _Chunk(times=times, ids=ids, inputs=inputs, targets=targets)


def _rows(chunks: Iterator[_Chunk], *, rank: int) -> Iterator[tuple]:
    for chunk in chunks:
        ranks = repeat(rank, len(chunk.ids))
        yield from zip(chunk.times, ranks, chunk.ids, chunk.inputs, chunk.targets, strict=True)


def _prediction_chunks(
    registered_model: RegisteredModel, *, with_times: bool, with_keys: bool = False, rows: QuerySet | None = None
) -> Iterator[_Chunk]:
    """All the model's labelled predictions in time order, or `rows` of them in no order (the caller sorts them:
    in time order SQLite would walk the model's whole time index to find a few)."""
    # An approved training label wins over the recorded outcome.
    label = NullIf(_json_text("training_label"), Value("null", output_field=TextField()))
    rows = labelled_predictions(registered_model).order_by("created_at", "pk") if rows is None else rows.order_by()
    target = Coalesce(label, _json_text("actual"))
    return _column_chunks(rows, target=target, with_times=with_times, with_keys=with_keys)


def _example_chunks(registered_model: RegisteredModel, *, with_times: bool) -> Iterator[_Chunk]:
    rows = labelled_examples(registered_model).order_by("created_at", "pk")
    return _column_chunks(rows, target=_json_text("target"), with_times=with_times, negative_ids=True)


def _json_text(name: str) -> Cast:
    return Cast(name, TextField())


class _UtcTimeText(Func):
    """A time as "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC, which NumPy reads as datetime64 in C."""

    output_field = TextField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        # Stored so already; the cast keeps Python's sqlite3 from parsing each one into a datetime.
        return self.as_sql(compiler, connection, template="CAST(%(expressions)s AS text)", **extra)

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> tuple[str, list]:
        template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"
        return self.as_sql(compiler, connection, template=template, **extra)


def _time_keys(texts: Sequence[str]) -> np.ndarray:
    return np.array(texts, dtype="datetime64[us]").view(np.int64)


def _column_chunks(
    rows: QuerySet, *, target: Any, with_times: bool, with_keys: bool = False, negative_ids: bool = False
) -> Iterator[_Chunk]:
    """The rows a chunk at a time, in columns; JSON as text, and times as text, which in the database's UTC
    format sorts as the times do.

    A raw cursor, because the ORM's per-value conversions (JSON decoding, SQLite's time parsing) cost more than
    everything else in reading a million rows; chunked_cursor is the server-side cursor `.iterator()` uses on
    PostgreSQL, so the result is never held in memory whole."""
    times = [Cast("created_at", TextField())] if with_times else []
    keys = [_UtcTimeText("created_at")] if with_keys else []
    sql, params = rows.values_list(*times, *keys, "pk", _json_text("input"), target).query.sql_with_params()
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(CHUNK):
            *extra, ids, inputs, targets = zip(*chunk, strict=True)
            yield _Chunk(
                times=extra[0] if with_times else (),
                ids=[-pk for pk in ids] if negative_ids else ids,
                inputs=inputs,
                targets=targets,
                keys=_time_keys(extra[-1]) if with_keys else None,
            )


# --- collecting -------------------------------------------------------------------------------------------------


class _RowCollector:
    """Sorts rows by input shape while they stream by; list-of-number rows of the first length seen go straight
    into a float64 matrix grown in place, other shapes into a list (they are rarely the most common)."""

    def __init__(self, *, task_type: str, width: int | None = None, keep_keys: bool = False) -> None:
        self.task_type = task_type
        self.read = 0
        self.max_id = 0
        self.shapes: Counter[Shape] = Counter()
        self.width = width
        self.keep_keys = keep_keys
        self.matrix = np.empty((0, 0))
        self.matrix_ids = np.empty(0, dtype=np.int64)
        self.matrix_keys = np.empty(0, dtype=np.int64)
        self.matrix_targets: list[Any] = []
        self.others: list[tuple[int, Any, Any, Shape]] = []
        self.unfit_ids: list[int] = []
        self._memo: dict[str | None, Any] = {}

    def add(self, chunk: _Chunk) -> None:
        self.read += len(chunk.ids)
        if chunk.ids:
            self.max_id = max(self.max_id, max(chunk.ids))
        ids, inputs, targets, keys = self._fitting(chunk)
        if ids and not self._add_number_rows(ids, inputs, targets, keys):
            for index, (row_id, given, target) in enumerate(zip(ids, inputs, targets, strict=True)):
                self._add_one(row_id, json.loads(given), target, key=0 if keys is None else int(keys[index]))

    def matrix_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Any]]:
        """The list-of-number rows of `width` with fitting targets: ids, time keys, inputs, targets."""
        count = len(self.matrix_targets)
        return self.matrix_ids[:count], self.matrix_keys[:count], self.matrix[:count], self.matrix_targets

    def skipped_row_ids(self) -> np.ndarray:
        """Rows read but not among `matrix_rows` (when those are the dataset, the rows it skipped)."""
        others = [row_id for row_id, *_ in self.others]
        return np.array(self.unfit_ids + others, dtype=np.int64)

    def snapshot(self, *, identity: dict[str, Any], read_at: datetime) -> Snapshot | None:
        """What to keep of a full read (after `dataset()`): None unless the dataset is the matrix's rows. It shares
        the row ids with the dataset, and the time keys with this collector: copies would stay in memory through the
        fit, beside the feature matrix, for nothing (neither is changed again)."""
        # Trimmed first (as `dataset()` trims): a trim after the views are taken could move the arrays under them.
        self._resize(len(self.matrix_targets))
        ids, keys, matrix, targets = self.matrix_rows()
        skipped = self.skipped_row_ids()
        if not self.keep_keys or self.width is None or len(ids) <= len(skipped):
            return None
        if self.task_type == TaskType.REGRESSION:
            codes, labels = np.array(targets, dtype=np.float64), None
        else:
            labels = sorted(set(targets))
            index = {label: code for code, label in enumerate(labels)}
            codes = np.fromiter(map(index.__getitem__, targets), dtype=np.int32, count=len(targets))
        return Snapshot(
            identity=identity, read_at=read_at, watermark=self.max_id, width=self.width,
            ids=ids, keys=keys, targets=codes, skipped=skipped, labels=labels,
        )  # fmt: skip

    def dataset(self) -> Dataset:
        usable = Counter({shape: count for shape, count in self.shapes.items() if shape != UNUSABLE})
        if not usable:
            return Dataset(ids=np.empty(0, np.int64), inputs=[], targets=self._targets([]), skipped=self.read)
        common = usable.most_common(1)[0][0]
        if common == ("numbers", self.width):
            self._resize(len(self.matrix_targets))
            ids, inputs, targets = self.matrix_ids, self.matrix, self.matrix_targets
        else:
            rows = [(row_id, given, target) for row_id, given, target, shape in self.others if shape == common]
            ids = np.fromiter((row_id for row_id, _, _ in rows), np.int64, len(rows))
            values = [given for _, given, _ in rows]
            inputs = np.array(values, dtype=np.float64) if common[0] == "numbers" else values
            targets = [target for _, _, target in rows]
        if isinstance(inputs, np.ndarray):
            # Read-only, as a snapshot's map is: the snapshot is stored from it while a model fits on it, and an
            # estimator allowed to work in place (copy_X=False) would otherwise change the stored rows.
            inputs.setflags(write=False)
        return Dataset(ids=ids, inputs=inputs, targets=self._targets(targets), skipped=self.read - len(ids))

    def _fitting(self, chunk: _Chunk) -> tuple[Sequence[int], Sequence[str], list[Any], np.ndarray | None]:
        """The rows whose target fits the task type, with their canonical targets (and time keys)."""
        if self.task_type == TaskType.REGRESSION:
            targets = [self._target(text) for text in chunk.targets]
        else:  # few distinct labels: canonical once each, then looked up
            canonical = {text: self._target(text) for text in set(chunk.targets)}
            targets = list(map(canonical.__getitem__, chunk.targets))
        if _UNFIT not in targets:  # a C-level scan; nothing defines == with _UNFIT, so this is by identity
            return chunk.ids, chunk.inputs, targets, chunk.keys
        kept = [index for index, target in enumerate(targets) if target is not _UNFIT]
        self.unfit_ids.extend(chunk.ids[i] for i, target in enumerate(targets) if target is _UNFIT)
        keys = None if chunk.keys is None else chunk.keys[kept]
        return [chunk.ids[i] for i in kept], [chunk.inputs[i] for i in kept], [targets[i] for i in kept], keys

    def _target(self, text: str | None) -> Any:
        """The canonical target of JSON text, or _UNFIT when it does not fit the task type (the row is skipped)."""
        if text in self._memo:
            return self._memo[text]
        try:
            target = _canonical_target(self.task_type, json.loads(text)) if text is not None else _UNFIT
        except LabelError:
            target = _UNFIT
        if self.task_type != TaskType.REGRESSION and len(self._memo) < _TARGET_MEMO_LIMIT:
            self._memo[text] = target
        return target

    def _add_number_rows(
        self, ids: Sequence[int], inputs: Sequence[str], targets: list[Any], keys: np.ndarray | None
    ) -> bool:
        """Decode the rows straight into the matrix when every input is a list of `width` usable numbers."""
        values = _number_lists(inputs)
        if not (values and isinstance(values[0], list) and values[0] and self.width in (None, len(values[0]))):
            return False
        start = self._reserve(len(values), width=len(values[0]))
        block = self.matrix[start : start + len(values)]
        try:
            block[...] = values  # refused when ragged, nested or too large for a float
        except (ValueError, TypeError, OverflowError):
            return False
        if not (block.min() > -MAX_INPUT_NUMBER and block.max() < MAX_INPUT_NUMBER):  # false for NaN too
            return False
        self.matrix_ids[start : start + len(values)] = ids
        if keys is not None:
            self.matrix_keys[start : start + len(values)] = keys
        self.matrix_targets.extend(targets)
        self.shapes[("numbers", block.shape[1])] += len(values)
        return True

    def _add_one(self, row_id: int, given: Any, target: Any, *, key: int) -> None:
        shape = input_shape(given)
        self.shapes[shape] += 1
        if shape[0] == "numbers" and self.width in (None, shape[1]):
            start = self._reserve(1, width=shape[1])
            self.matrix[start] = given
            self.matrix_ids[start] = row_id
            if self.keep_keys:
                self.matrix_keys[start] = key
            self.matrix_targets.append(target)
        elif shape != UNUSABLE:
            self.others.append((row_id, given, target, shape))

    def _reserve(self, count: int, *, width: int) -> int:
        """Where the next `count` matrix rows go; the matrix is made on first use and grows by an eighth when full."""
        start = len(self.matrix_targets)
        if not self.matrix.size:
            self.width = width
            self.matrix = np.empty((max(INITIAL_ROWS, count), width))
            self.matrix_ids = np.empty(len(self.matrix), np.int64)
            self.matrix_keys = np.empty(len(self.matrix) if self.keep_keys else 0, np.int64)
        if start + count > len(self.matrix):
            self._resize(max(len(self.matrix) * 9 // 8, start + count))
        return start

    def _resize(self, rows: int) -> None:
        # In place: realloc remaps a large block's pages, so its rows are never held twice (a new array and a copy
        # would double the peak). NumPy zero-fills what it adds, hence small steps and a trim at the end. No view
        # of these arrays exists while rows are read.
        self.matrix.resize((rows, self.matrix.shape[1]), refcheck=False)
        self.matrix_ids.resize(rows, refcheck=False)
        if self.keep_keys:
            self.matrix_keys.resize(rows, refcheck=False)

    def _targets(self, targets: Sequence[Any]) -> np.ndarray:
        return np.array(targets, dtype=np.float64) if self.task_type == TaskType.REGRESSION else label_array(targets)


class _Unfit:
    """Marks a target that does not fit the task type."""


_UNFIT = _Unfit()


def _canonical_target(task_type: str, value: Any) -> Any:
    return numeric_value(value) if task_type == TaskType.REGRESSION else label_for(task_type, value)


def _number_lists(texts: Sequence[str]) -> list[Any] | None:
    """The decoded JSON texts when they can hold nothing but numbers in arrays; None otherwise (then the rows are
    looked at one by one)."""
    joined = ",".join(texts)
    if any(character in joined for character in _NOT_IN_NUMBER_LISTS):
        return None
    try:
        return orjson.loads(f"[{joined}]")
    except orjson.JSONDecodeError:  # not JSON orjson reads (a huge integer): the slow path decides
        return None
