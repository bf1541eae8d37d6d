"""How predictions and outcomes are read for each task type, and how an outcome is judged against them."""

import json
import math
from dataclasses import dataclass
from typing import Any

from collector.models import TaskType

_TRUE_WORDS = {"1", "true", "yes", "positive"}
_FALSE_WORDS = {"0", "false", "no", "negative"}
MAX_LABEL_LENGTH = 255
_SHORT_LABEL = 64


class LabelError(ValueError):
    pass


def binary_label(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float) and value in (0, 1):
        return str(int(value))
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        return "1" if value.strip().lower() in _TRUE_WORDS else "0"
    raise LabelError("a binary model takes 0 or 1 (or true/false)")


def class_label(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise LabelError("a class label must be a string or a whole number")
    label = str(value)
    if not label or len(label) > MAX_LABEL_LENGTH:
        raise LabelError(f"a class label has 1 to {MAX_LABEL_LENGTH} characters")
    return label


MAX_NUMERIC = 1e100  # squared errors and their sums stay finite


def numeric_value(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LabelError("a regression model takes a finite number")
    if abs(value) > MAX_NUMERIC or not math.isfinite(value):  # the size check first: a huge int overflows isfinite
        raise LabelError(f"a regression model takes a finite number of at most {MAX_NUMERIC:g} in size")
    return float(value)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return " ".join(value.split())
    return json.dumps(value, sort_keys=True)


def label_for(task_type: str, value: Any) -> str:
    """The canonical class label of a prediction or outcome ("" where the task has no classes)."""
    if task_type == TaskType.BINARY:
        return binary_label(value)
    if task_type == TaskType.MULTICLASS:
        return class_label(value)
    if task_type == TaskType.REGRESSION:
        numeric_value(value)
    return ""


def outcome_key(task_type: str, value: Any) -> str:
    """A value that is equal for two outcomes exactly when they mean the same thing."""
    if task_type == TaskType.REGRESSION:
        return repr(numeric_value(value))
    if task_type == TaskType.GENERATIVE:
        return _text(value)
    return label_for(task_type, value)


@dataclass(frozen=True)
class Judgement:
    actual_label: str
    is_correct: bool | None
    error: float | None


def judge(task_type: str, prediction: Any, actual: Any) -> Judgement:
    """Compare an outcome with the prediction; raises LabelError when the outcome does not fit the task."""
    if task_type == TaskType.REGRESSION:
        return Judgement("", None, numeric_value(actual) - numeric_value(prediction))
    if task_type == TaskType.GENERATIVE:
        return Judgement("", _text(prediction) == _text(actual), None)
    actual_label = label_for(task_type, actual)
    return Judgement(actual_label, label_for(task_type, prediction) == actual_label, None)


def infer_task_type(prediction: Any) -> str:
    """Guess a new model's task from its first prediction; clients can say `task_type` instead."""
    if isinstance(prediction, bool) or (isinstance(prediction, int) and prediction in (0, 1)):
        return TaskType.BINARY
    if isinstance(prediction, str) and prediction.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        return TaskType.BINARY
    if isinstance(prediction, int):
        return TaskType.MULTICLASS
    if isinstance(prediction, float):  # 1.0 in JSON says "a number", not "class 1"
        return TaskType.REGRESSION
    if isinstance(prediction, str) and len(prediction) <= _SHORT_LABEL and "\n" not in prediction:
        return TaskType.MULTICLASS
    return TaskType.GENERATIVE
