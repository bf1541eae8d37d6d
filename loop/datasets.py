"""The labelled examples a training run learns from, read from the database in chunks, oldest first.

Inputs that are lists of numbers (the common case) go straight into one preallocated float64 matrix, so a run on
a million rows holds that matrix and little else; objects, text and single numbers stay JSON values in a list.
"""

import heapq
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

import numpy as np
import orjson
from django.db import connection
from django.db.models import Q, QuerySet, TextField
from django.db.models.functions import Cast

from collector.labels import LabelError, label_for, numeric_value
from collector.models import Prediction, RegisteredModel, TaskType
from loop.models import LabelledExample

CHUNK = 5000
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
    capacity = labelled_predictions(registered_model).count() + labelled_examples(registered_model).count()
    rows = _RowCollector(task_type=registered_model.task_type, capacity=capacity)
    for chunk in _labelled_chunks(registered_model):
        rows.add(chunk)
    return rows.dataset()


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

# (time, source rank, row id, input as JSON text, target as JSON text); examples rank before predictions at equal times.
Row = tuple[Any, int, int, str, str | None]


def _labelled_chunks(registered_model: RegisteredModel) -> Iterator[list[Row]]:
    predictions = _prediction_chunks(registered_model)
    examples = _example_chunks(registered_model)
    first_prediction, first_example = next(predictions, None), next(examples, None)
    if first_example is None or first_prediction is None:  # one source: nothing to merge
        yield from chain([first_prediction or first_example or []], predictions, examples)
        return
    merged = heapq.merge(
        chain.from_iterable(chain([first_prediction], predictions)),
        chain.from_iterable(chain([first_example], examples)),
        key=lambda row: (row[0], row[1]),
    )
    while chunk := list(islice(merged, CHUNK)):
        yield chunk


def _prediction_chunks(registered_model: RegisteredModel) -> Iterator[list[Row]]:
    rows = labelled_predictions(registered_model).order_by("created_at", "pk")
    fields = ("created_at", "pk", "input", "actual", "training_label")
    for chunk in _text_chunks(rows, fields):
        # An approved training label wins over the recorded outcome.
        yield [
            (created, 1, pk, given, label if label is not None and label != "null" else actual)
            for created, pk, given, actual, label in chunk
        ]


def _example_chunks(registered_model: RegisteredModel) -> Iterator[list[Row]]:
    rows = labelled_examples(registered_model).order_by("created_at", "pk")
    for chunk in _text_chunks(rows, ("created_at", "pk", "input", "target")):
        yield [(created, 0, -pk, given, target) for created, pk, given, target in chunk]


def _text_chunks(rows: QuerySet, fields: tuple[str, ...]) -> Iterator[list[tuple]]:
    """The fields in chunks, JSON columns as JSON text, times as the driver gives them.

    A raw cursor, because the ORM's per-value conversions (JSON decoding, SQLite's time parsing) cost more than
    everything else in reading a million rows; chunked_cursor is the server-side cursor `.iterator()` uses on
    PostgreSQL, so the result is not held in memory whole."""
    json_fields = {field.name for field in rows.model._meta.fields if field.get_internal_type() == "JSONField"}
    texts = {f"{name}_text": Cast(name, TextField()) for name in fields if name in json_fields}
    selected = rows.annotate(**texts).values_list(*(f"{name}_text" if name in json_fields else name for name in fields))
    sql, params = selected.query.sql_with_params()
    with connection.chunked_cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(CHUNK):
            yield chunk


# --- collecting -------------------------------------------------------------------------------------------------


class _RowCollector:
    """Sorts rows by input shape while they stream by; list-of-number rows of the first length seen go straight
    into a float64 matrix with room for every row, other shapes into a list (they are rarely the most common)."""

    def __init__(self, *, task_type: str, capacity: int) -> None:
        self.task_type = task_type
        self.capacity = capacity
        self.read = 0
        self.shapes: Counter[Shape] = Counter()
        self.width: int | None = None
        self.matrix = np.empty((0, 0))
        self.matrix_ids = np.empty(0, dtype=np.int64)
        self.matrix_targets: list[Any] = []
        self.others: list[tuple[int, Any, Any, Shape]] = []
        self._memo: dict[str, Any] = {}

    def add(self, chunk: list[Row]) -> None:
        self.read += len(chunk)
        fitting = list(self._with_targets(chunk))
        block = _number_rows([given for _, given, _ in fitting])
        if block is not None and self.width in (None, block.shape[1]):
            self._append_block(np.fromiter((row_id for row_id, _, _ in fitting), np.int64, len(fitting)), block)
            self.matrix_targets.extend(target for _, _, target in fitting)
            self.shapes[("numbers", block.shape[1])] += len(block)
            return
        for row_id, given, target in fitting:
            self._add_one(row_id, json.loads(given), target)

    def dataset(self) -> Dataset:
        usable = Counter({shape: count for shape, count in self.shapes.items() if shape != UNUSABLE})
        if not usable:
            return Dataset(ids=np.empty(0, np.int64), inputs=[], targets=self._targets([]), skipped=self.read)
        common = usable.most_common(1)[0][0]
        if common == ("numbers", self.width):
            kept = len(self.matrix_targets)
            ids, inputs, targets = self.matrix_ids[:kept], self.matrix[:kept], self.matrix_targets
        else:
            rows = [(row_id, given, target) for row_id, given, target, shape in self.others if shape == common]
            ids = np.fromiter((row_id for row_id, _, _ in rows), np.int64, len(rows))
            values = [given for _, given, _ in rows]
            inputs = np.array(values, dtype=np.float64) if common[0] == "numbers" else values
            targets = [target for _, _, target in rows]
        return Dataset(ids=ids, inputs=inputs, targets=self._targets(targets), skipped=self.read - len(ids))

    def _with_targets(self, chunk: list[Row]) -> Iterator[tuple[int, str, Any]]:
        for _, _, row_id, given, target_text in chunk:
            target = self._target(target_text)
            if target is not _UNFIT:
                yield row_id, given, target

    def _target(self, text: str | None) -> Any:
        """The canonical target of JSON text, or _UNFIT when it does not fit the task type (the row is skipped)."""
        if text in self._memo:
            return self._memo[text]
        try:
            target = _canonical_target(self.task_type, json.loads(text)) if text is not None else _UNFIT
        except LabelError:
            target = _UNFIT
        if self.task_type != TaskType.REGRESSION and len(self._memo) < _TARGET_MEMO_LIMIT:
            self._memo[text] = target  # class labels repeat: decode each distinct one once
        return target

    def _add_one(self, row_id: int, given: Any, target: Any) -> None:
        shape = input_shape(given)
        self.shapes[shape] += 1
        if shape[0] == "numbers" and self.width in (None, shape[1]):
            self._append_block(np.array([row_id], np.int64), np.array([given], np.float64))
            self.matrix_targets.append(target)
        elif shape != UNUSABLE:
            self.others.append((row_id, given, target, shape))

    def _append_block(self, ids: np.ndarray, block: np.ndarray) -> None:
        start, count = len(self.matrix_targets), len(block)
        if self.width is None:
            self.width = block.shape[1]
            self.matrix = np.empty((max(self.capacity, count), self.width))
            self.matrix_ids = np.empty(len(self.matrix), np.int64)
        if start + count > len(self.matrix):  # rows labelled after the count: rare, so a copy is fine
            self.matrix = _grown(self.matrix, start + count)
            self.matrix_ids = _grown(self.matrix_ids, start + count)
        self.matrix[start : start + count] = block
        self.matrix_ids[start : start + count] = ids

    def _targets(self, targets: Sequence[Any]) -> np.ndarray:
        return np.array(targets, dtype=np.float64 if self.task_type == TaskType.REGRESSION else object)


class _Unfit:
    """Marks a target that does not fit the task type."""


_UNFIT = _Unfit()


def _canonical_target(task_type: str, value: Any) -> Any:
    return numeric_value(value) if task_type == TaskType.REGRESSION else label_for(task_type, value)


def _number_rows(texts: list[str]) -> np.ndarray | None:
    """The JSON texts as rows of a float64 matrix when every one is a non-empty list of the same count of usable
    numbers; None otherwise (those rows are then looked at one by one)."""
    joined = ",".join(texts)
    if not texts or any(character in joined for character in _NOT_IN_NUMBER_LISTS):
        return None
    try:
        block = np.array(orjson.loads(f"[{joined}]"), dtype=np.float64)
    except (orjson.JSONDecodeError, ValueError, TypeError, OverflowError):  # ragged, nested, a huge integer
        return None
    if block.ndim != 2 or block.shape[1] == 0 or not (np.abs(block) < MAX_INPUT_NUMBER).all():
        return None
    return block


def _grown(array: np.ndarray, rows: int) -> np.ndarray:
    grown = np.empty((max(rows, len(array) * 5 // 4), *array.shape[1:]), dtype=array.dtype)
    grown[: len(array)] = array
    return grown
