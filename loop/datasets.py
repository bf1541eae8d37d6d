"""The labelled examples a training run learns from, read from the database in chunks, oldest first.

Inputs that are lists of numbers (the common case) are decoded a chunk at a time straight into one float64 matrix,
so a run on a million rows holds that matrix and little else; objects, text and single numbers stay JSON values in
a list.
"""

import gc
import heapq
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice, repeat
from typing import Any

import numpy as np
import orjson
from django.db import connection
from django.db.models import Q, QuerySet, TextField, Value
from django.db.models.functions import Cast, Coalesce, NullIf

from collector.labels import LabelError, label_for, numeric_value
from collector.models import Prediction, RegisteredModel, TaskType
from loop.models import LabelledExample

CHUNK = 5000
INITIAL_ROWS = 65_536
MAX_INPUT_NUMBER = 1e300
Shape = tuple[str, ...] | tuple[str, int]
UNUSABLE: Shape = ("unusable",)
# In JSON text holding only arrays of numbers none of these characters can appear: they start strings, objects,
# true/false/null, NaN and Infinity.
_NOT_IN_NUMBER_LISTS = '"{tfnNI'
_TARGET_MEMO_LIMIT = 10_000


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
    return Prediction.objects.filter(registered_model=registered_model).filter(
        Q(actual__isnull=False) | Q(training_label__isnull=False)
    )


def labelled_examples(registered_model: RegisteredModel) -> QuerySet:
    return LabelledExample.objects.filter(registered_model=registered_model)


def dataset_read(*, registered_model: RegisteredModel) -> Dataset:
    """Every labelled row whose target fits the task and whose input has the most common shape; the rest skipped."""
    rows = _RowCollector(task_type=registered_model.task_type)
    with _cyclic_gc_paused():
        for chunk in _labelled_chunks(registered_model):
            rows.add(chunk)
    return rows.dataset()


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
    """Rows in columns: times (only to merge the two sources), row ids, inputs and targets as JSON text."""

    times: Sequence[str]
    ids: Sequence[int]
    inputs: Sequence[str]
    targets: Sequence[str | None]


def _labelled_chunks(registered_model: RegisteredModel) -> Iterator[_Chunk]:
    if not labelled_examples(registered_model).exists():  # one source: nothing to merge, no times needed
        yield from _prediction_chunks(registered_model, with_times=False)
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


def _prediction_chunks(registered_model: RegisteredModel, *, with_times: bool) -> Iterator[_Chunk]:
    # An approved training label wins over the recorded outcome.
    label = NullIf(_json_text("training_label"), Value("null", output_field=TextField()))
    rows = labelled_predictions(registered_model).order_by("created_at", "pk")
    return _column_chunks(rows, target=Coalesce(label, _json_text("actual")), with_times=with_times)


def _example_chunks(registered_model: RegisteredModel, *, with_times: bool) -> Iterator[_Chunk]:
    rows = labelled_examples(registered_model).order_by("created_at", "pk")
    return _column_chunks(rows, target=_json_text("target"), with_times=with_times, negative_ids=True)


def _json_text(name: str) -> Cast:
    return Cast(name, TextField())


def _column_chunks(rows: QuerySet, *, target: Any, with_times: bool, negative_ids: bool = False) -> Iterator[_Chunk]:
    """The rows a chunk at a time, in columns; JSON as text, and times as text, which in the database's UTC
    format sorts as the times do.

    A raw cursor, because the ORM's per-value conversions (JSON decoding, SQLite's time parsing) cost more than
    everything else in reading a million rows; chunked_cursor is the server-side cursor `.iterator()` uses on
    PostgreSQL, so the result is never held in memory whole."""
    times = [Cast("created_at", TextField())] if with_times else []
    sql, params = rows.values_list(*times, "pk", _json_text("input"), target).query.sql_with_params()
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(CHUNK):
            *time_column, ids, inputs, targets = zip(*chunk, strict=True)
            yield _Chunk(
                times=time_column[0] if with_times else (),
                ids=[-pk for pk in ids] if negative_ids else ids,
                inputs=inputs,
                targets=targets,
            )


# --- collecting -------------------------------------------------------------------------------------------------


class _RowCollector:
    """Sorts rows by input shape while they stream by; list-of-number rows of the first length seen go straight
    into a float64 matrix grown in place, other shapes into a list (they are rarely the most common)."""

    def __init__(self, *, task_type: str) -> None:
        self.task_type = task_type
        self.read = 0
        self.shapes: Counter[Shape] = Counter()
        self.width: int | None = None
        self.matrix = np.empty((0, 0))
        self.matrix_ids = np.empty(0, dtype=np.int64)
        self.matrix_targets: list[Any] = []
        self.others: list[tuple[int, Any, Any, Shape]] = []
        self._memo: dict[str | None, Any] = {}

    def add(self, chunk: _Chunk) -> None:
        self.read += len(chunk.ids)
        ids, inputs, targets = self._fitting(chunk)
        if ids and not self._add_number_rows(ids, inputs, targets):
            for row_id, given, target in zip(ids, inputs, targets, strict=True):
                self._add_one(row_id, json.loads(given), target)

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
        return Dataset(ids=ids, inputs=inputs, targets=self._targets(targets), skipped=self.read - len(ids))

    def _fitting(self, chunk: _Chunk) -> tuple[Sequence[int], Sequence[str], list[Any]]:
        """The rows whose target fits the task type, with their canonical targets."""
        if self.task_type == TaskType.REGRESSION:
            targets = [self._target(text) for text in chunk.targets]
        else:  # few distinct labels: canonical once each, then looked up
            canonical = {text: self._target(text) for text in set(chunk.targets)}
            targets = list(map(canonical.__getitem__, chunk.targets))
        if _UNFIT not in targets:  # a C-level scan; nothing defines == with _UNFIT, so this is by identity
            return chunk.ids, chunk.inputs, targets
        kept = [index for index, target in enumerate(targets) if target is not _UNFIT]
        return [chunk.ids[i] for i in kept], [chunk.inputs[i] for i in kept], [targets[i] for i in kept]

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

    def _add_number_rows(self, ids: Sequence[int], inputs: Sequence[str], targets: list[Any]) -> bool:
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
        self.matrix_targets.extend(targets)
        self.shapes[("numbers", block.shape[1])] += len(values)
        return True

    def _add_one(self, row_id: int, given: Any, target: Any) -> None:
        shape = input_shape(given)
        self.shapes[shape] += 1
        if shape[0] == "numbers" and self.width in (None, shape[1]):
            start = self._reserve(1, width=shape[1])
            self.matrix[start] = given
            self.matrix_ids[start] = row_id
            self.matrix_targets.append(target)
        elif shape != UNUSABLE:
            self.others.append((row_id, given, target, shape))

    def _reserve(self, count: int, *, width: int) -> int:
        """Where the next `count` matrix rows go; the matrix is made on first use and grows by an eighth when full."""
        start = len(self.matrix_targets)
        if self.width is None:
            self.width = width
            self.matrix = np.empty((max(INITIAL_ROWS, count), width))
            self.matrix_ids = np.empty(len(self.matrix), np.int64)
        if start + count > len(self.matrix):
            self._resize(max(len(self.matrix) * 9 // 8, start + count))
        return start

    def _resize(self, rows: int) -> None:
        # In place: realloc remaps a large block's pages, so its rows are never held twice (a new array and a copy
        # would double the peak). NumPy zero-fills what it adds, hence small steps and a trim at the end. No view
        # of these arrays exists while rows are read.
        self.matrix.resize((rows, self.matrix.shape[1]), refcheck=False)
        self.matrix_ids.resize(rows, refcheck=False)

    def _targets(self, targets: Sequence[Any]) -> np.ndarray:
        return np.array(targets, dtype=np.float64 if self.task_type == TaskType.REGRESSION else object)


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
