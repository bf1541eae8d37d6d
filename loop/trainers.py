"""Training plug-ins: the `Trainer` interface, the registry that finds trainers by name, and the scikit-learn trainer.

A trainer turns a JSON *spec* (stored with a model version) into a fitted model that can predict, and writes that
model to one file. Frameworks other than scikit-learn plug in by implementing `Trainer` and adding their class to
`settings.FEEDBACKHUB_TRAINERS`; nothing else in the loop knows which framework it drives.
"""

import importlib
import math
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self

import numpy as np
import sklearn
import skops.io
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from sklearn.feature_extraction import DictVectorizer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from collector.labels import MAX_NUMERIC, LabelError, binary_label, class_label, numeric_value

CLASSIFICATION_TASKS = frozenset({"binary", "multiclass"})
TRAINABLE_TASKS = CLASSIFICATION_TASKS | {"regression"}
DEFAULT_TRAINER = "sklearn"
DEFAULT_TRAINERS = {"sklearn": "loop.trainers.SklearnTrainer"}
SORTABLE_LABEL_LENGTH = 32  # longer labels stay Python strings: fixed width would cost 4 bytes a character a row


class TrainerSpecError(ValueError):
    """The spec asks for something no trainer will do (unknown trainer, estimator or parameter, wrong task)."""


class TrainingDataError(ValueError):
    """Inputs or targets that the trainer cannot turn into features or labels."""


class ArtifactRefusedError(ValueError):
    """A model file that holds types we do not trust, or is not a model this trainer wrote."""


class Trainer(Protocol):
    """What the loop needs from a training framework (scikit-learn, PyTorch, TensorFlow, ...).

    Construction: `TrainerClass(spec, task_type)`, both positional. `spec` is the JSON dict stored with the model
    version (`{"trainer": name, ...}` plus whatever the trainer understands); `task_type` is "binary", "multiclass"
    or "regression" ("generative" is never passed). The constructor validates the spec and raises
    `TrainerSpecError` for anything it will not train, before any data is read.

    Inputs: in a training run, when the rows' inputs are lists of numbers, `fit` and `predict` receive one 2-D
    float64 NumPy array (C-contiguous, one row per input, every value finite and below 1e300 in size; often a view
    into a larger array or a read-only memory map of the dataset snapshot, so never write to it); otherwise
    (objects, strings, single numbers) a list of the JSON values. Serving (`predict`, `predict_proba` on the API)
    always passes a list of JSON values, which the trainer checks against what it was trained on and refuses with
    `TrainingDataError` (or `ValueError`/`TypeError`).

    Labels: for "binary" and "multiclass" tasks `fit` receives and `predict` returns class labels as strings, made
    canonical by `canonical_targets`: binary labels are "0" or "1" (from 0/1, true/false, "yes"/"no", ...), multiclass
    labels are `str(label)` (so 2 and "2" are the same class). Regression targets and predictions are floats. In a
    training run the targets arrive already canonical as a 1-D NumPy array (object array of str, or float64), for
    which `canonical_targets` is cheap; direct callers may pass any sequence of raw targets.
    """

    name: ClassVar[str]
    """The key this class is registered under in `FEEDBACKHUB_TRAINERS`, e.g. "sklearn"."""

    def fit(self, inputs: np.ndarray | Sequence[Any], targets: Sequence[Any]) -> None:
        """Train on the inputs (a 2-D float64 array or a list of JSON values) and their targets (same length, at
        least one row)."""
        ...

    def predict(self, inputs: np.ndarray | Sequence[Any]) -> list[Any]:
        """One prediction per input: a class label (str) or a float for regression."""
        ...

    def predict_proba(self, inputs: np.ndarray | Sequence[Any]) -> list[dict[str, float]] | None:
        """Per input, class label -> probability; None for regression or a model without probabilities."""
        ...

    def save(self, path: Path) -> None:
        """Write the fitted model to exactly `path` (one file; the name need not end in the usual suffix)."""
        ...

    @classmethod
    def load(cls, path: Path, spec: dict[str, Any]) -> "Trainer":
        """Read a file written by `save`; `spec` is the one the model was trained with."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON facts about the model for lineage: at least "trainer" and "task_type"."""
        ...


def trainer_class(name: str) -> type[Trainer]:
    """The trainer class registered under `name` in `settings.FEEDBACKHUB_TRAINERS`."""
    registry: Mapping[str, str] = getattr(settings, "FEEDBACKHUB_TRAINERS", DEFAULT_TRAINERS)
    if name not in registry:
        known = ", ".join(sorted(registry)) or "none"
        raise TrainerSpecError(f"Unknown trainer '{name}'; known trainers: {known}.")
    try:
        found = import_string(registry[name])
    except ImportError as error:
        raise ImproperlyConfigured(
            f"FEEDBACKHUB_TRAINERS['{name}'] = '{registry[name]}' cannot be imported."
        ) from error
    if not isinstance(found, type):
        raise ImproperlyConfigured(f"FEEDBACKHUB_TRAINERS['{name}'] = '{registry[name]}' is not a class.")
    return found


def trainer_from_spec(*, spec: dict[str, Any], task_type: str) -> Trainer:
    """An unfitted trainer for `spec`; raises `TrainerSpecError` when the spec or task cannot be trained."""
    check_trainable_task(task_type=task_type)
    if not isinstance(spec, dict):
        raise TrainerSpecError("A training spec is a JSON object.")
    name = spec.get("trainer", DEFAULT_TRAINER)
    if not isinstance(name, str):
        raise TrainerSpecError("The spec's 'trainer' is a string naming a registered trainer.")
    return trainer_class(name)(spec, task_type)


def training_blas_threads() -> AbstractContextManager:
    """Within it, BLAS libraries (NumPy's, SciPy's, scikit-learn's) use FEEDBACKHUB_TRAINING_BLAS_THREADS threads."""
    threads = settings.FEEDBACKHUB_TRAINING_BLAS_THREADS
    return threadpool_limits(limits=threads, user_api="blas") if threads else nullcontext()


def check_trainable_task(*, task_type: str) -> None:
    if task_type == "generative":
        raise TrainerSpecError("Generative (free text) models cannot be retrained here.")
    if task_type not in TRAINABLE_TASKS:
        raise TrainerSpecError(f"Unknown task type '{task_type}'; trainable: {', '.join(sorted(TRAINABLE_TASKS))}.")


def canonical_targets(*, task_type: str, targets: Sequence[Any]) -> np.ndarray:
    """Targets in the form trainers fit on and predict: the collector's canonical labels (a NumPy array of str, fixed
    width or of objects), or floats (a float64 array). Targets already in that form are returned as they are, checked
    without a loop."""
    # The collector's own label rules, so a retrained model's labels match the stored outcomes it is scored on.
    convert = {"binary": binary_label, "multiclass": class_label, "regression": numeric_value}[task_type]
    if task_type == "regression" and _finite_floats(targets):
        return targets
    if task_type in CLASSIFICATION_TASKS and _canonical_labels(targets, convert=convert):
        return targets if _is_str_array(targets) else np.asarray(targets, dtype=object)
    canonical = []
    for index, target in enumerate(targets):
        try:
            canonical.append(convert(target))
        except LabelError as error:
            raise TrainingDataError(
                f"Target #{index} ({target!r}) does not fit a {task_type} model: {error}."
            ) from error
    return np.array(canonical, dtype=object if task_type in CLASSIFICATION_TASKS else np.float64)


def label_array(labels: Sequence[str]) -> np.ndarray:
    """Labels as a fixed-width str array when they are short (what `sortable_labels` would make of them), else as
    an object array."""
    distinct = set(labels)
    longest = max(map(len, distinct), default=1)
    # NumPy's fixed-width str drops trailing NUL characters, which would change such a label.
    if longest <= SORTABLE_LABEL_LENGTH and not any(label.endswith("\x00") for label in distinct):
        return np.array(labels, dtype=f"<U{max(1, longest)}")
    return np.array(labels, dtype=object)


def sortable_labels(labels: np.ndarray) -> np.ndarray:
    """Canonical labels as fixed-width strings when they are short: scikit-learn sorts labels (np.unique) when it
    fits or scores, and sorting Python str objects took longer than fitting a linear model on a million rows."""
    if labels.dtype != object or not len(labels):
        return labels
    return label_array(labels.tolist())


def _is_str_array(values: Sequence[Any]) -> bool:
    return isinstance(values, np.ndarray) and values.dtype.kind == "U" and values.ndim == 1


def _finite_floats(targets: Sequence[Any]) -> bool:
    return (
        isinstance(targets, np.ndarray)
        and targets.dtype == np.float64
        and targets.ndim == 1
        and bool((np.abs(targets) <= MAX_NUMERIC).all())
    )


def _canonical_labels(targets: Sequence[Any], *, convert: Callable[[Any], str]) -> bool:
    """Whether every target is already a canonical label; only the distinct values are looked at."""
    if _is_str_array(targets):
        distinct = set(np.unique(targets).tolist())  # sorted in C, where a set of a million str objects is not
    else:
        values = targets.tolist() if isinstance(targets, np.ndarray) else targets
        try:
            distinct = set(values)
        except TypeError:  # an unhashable target (a list, an object) is not a label
            return False
    # A set holds 1 and True as one value, so anything but str goes the slow way.
    return all(type(value) is str and _converts_to_itself(value, convert) for value in distinct)


def _converts_to_itself(value: str, convert: Callable[[Any], str]) -> bool:
    try:
        return convert(value) == value
    except LabelError:
        return False


# --- scikit-learn -----------------------------------------------------------------------------------------------

CLASSIFIERS = frozenset(
    {
        "sklearn.linear_model.LogisticRegression",
        "sklearn.linear_model.SGDClassifier",
        "sklearn.linear_model.RidgeClassifier",
        "sklearn.svm.LinearSVC",
        "sklearn.naive_bayes.MultinomialNB",
        "sklearn.naive_bayes.ComplementNB",
        "sklearn.ensemble.RandomForestClassifier",
        "sklearn.ensemble.ExtraTreesClassifier",
        "sklearn.ensemble.GradientBoostingClassifier",
        "sklearn.ensemble.HistGradientBoostingClassifier",
        "sklearn.neighbors.KNeighborsClassifier",
        "sklearn.tree.DecisionTreeClassifier",
        "sklearn.dummy.DummyClassifier",
    }
)
REGRESSORS = frozenset(
    {
        "sklearn.linear_model.LinearRegression",
        "sklearn.linear_model.Ridge",
        "sklearn.linear_model.Lasso",
        "sklearn.linear_model.ElasticNet",
        "sklearn.linear_model.SGDRegressor",
        "sklearn.ensemble.RandomForestRegressor",
        "sklearn.ensemble.ExtraTreesRegressor",
        "sklearn.ensemble.GradientBoostingRegressor",
        "sklearn.ensemble.HistGradientBoostingRegressor",
        "sklearn.neighbors.KNeighborsRegressor",
        "sklearn.tree.DecisionTreeRegressor",
        "sklearn.dummy.DummyRegressor",
    }
)
DENSE_ONLY_ESTIMATORS = frozenset(
    {"sklearn.ensemble.HistGradientBoostingClassifier", "sklearn.ensemble.HistGradientBoostingRegressor"}
)
DEFAULT_CLASSIFIER = ("sklearn.linear_model.LogisticRegression", {"max_iter": 1000})
DEFAULT_REGRESSOR = ("sklearn.linear_model.Ridge", {})
SKLEARN_SPEC_KEYS = frozenset({"trainer", "estimator", "params"})

# Types outside skops' default trust that our pipelines legitimately contain (tree node storage, KNN's fitted
# data and search trees). skops distrusts the tree types because a crafted file can crash predict(); we accept
# them because `artifact_load` first checks the file is byte-for-byte the one we wrote.
TRUSTED_MODULE_PREFIXES = ("sklearn.", "numpy.", "scipy.sparse.")
ARTIFACT_FORMAT = 1

JsonScalar = str | int | float | bool | None


class FeatureMode(StrEnum):
    NUMERIC = "numeric"  # a list of numbers per input
    SCALAR = "scalar"  # one number per input
    DICT = "dict"  # a JSON object per input
    TEXT = "text"  # a string per input

    def label(self) -> str:
        return {
            FeatureMode.NUMERIC: "a list of numbers",
            FeatureMode.SCALAR: "a number",
            FeatureMode.DICT: "an object",
            FeatureMode.TEXT: "a string",
        }[self]


class SklearnTrainer:
    """A scikit-learn Pipeline: a featurizer chosen from the first input, then an allow-listed estimator.

    Spec: `{"trainer": "sklearn", "estimator": "<dotted path from CLASSIFIERS/REGRESSORS>", "params": {...}}`, all
    keys optional. Without an estimator: LogisticRegression(max_iter=1000) for classification, Ridge for regression.
    Params are JSON scalars or lists of them and must be constructor parameters of the estimator. Estimators with a
    `random_state` get 0 unless the spec says otherwise.

    Inputs (all inputs of one model must have the same form, fixed by the first training input):
    - a list of numbers (fixed length) -> the numbers as features; true/false count as 1/0;
    - a single number -> one feature;
    - an object -> DictVectorizer over the flattened object: nested keys joined with ".", list items as "key[i]",
      a list of strings as tags ("key=item"), strings one-hot ("key=value"), null (and NaN) left out as missing;
    - a string -> TF-IDF over its words.
    """

    name: ClassVar[str] = "sklearn"

    def __init__(self, spec: dict[str, Any], task_type: str) -> None:
        check_trainable_task(task_type=task_type)
        self.task_type = task_type
        self.estimator_path, self.params = _estimator_choice(spec=spec, task_type=task_type)
        self._pipeline: Pipeline | None = None
        self._feature_mode: FeatureMode | None = None
        self._feature_count: int | None = None

    def fit(self, inputs: np.ndarray | Sequence[Any], targets: Sequence[Any]) -> None:
        if len(inputs) != len(targets):
            raise TrainingDataError(f"{len(inputs)} inputs but {len(targets)} targets.")
        if not len(inputs):
            raise TrainingDataError("No training examples.")
        labels = canonical_targets(task_type=self.task_type, targets=targets)
        fitted_labels = sortable_labels(labels)
        if self.task_type in CLASSIFICATION_TASKS and not (fitted_labels != fitted_labels[0]).any():
            raise TrainingDataError(f"Every training target is '{labels[0]}'; a classifier needs two classes or more.")
        if isinstance(inputs, np.ndarray):
            mode, feature_count = FeatureMode.NUMERIC, inputs.shape[1] if inputs.ndim == 2 else None
        else:
            mode = _input_mode(inputs[0], index=0)
            feature_count = len(inputs[0]) if mode is FeatureMode.NUMERIC else None
        features = _feature_matrix(inputs, mode=mode, feature_count=feature_count)
        pipeline = Pipeline(
            [("features", _featurizer(mode=mode, estimator_path=self.estimator_path)), ("model", self._estimator())]
        )
        pipeline.fit(features, fitted_labels)
        self._pipeline, self._feature_mode, self._feature_count = pipeline, mode, feature_count

    def predict(self, inputs: np.ndarray | Sequence[Any]) -> list[Any]:
        predictions = self._fitted().predict(self._features(inputs))
        if self.task_type in CLASSIFICATION_TASKS:
            # tolist() first: str() of a NumPy string scalar took longer than predicting 200,000 rows.
            return [str(label) for label in predictions.tolist()]
        return [float(value) for value in predictions.tolist()]

    def predict_proba(self, inputs: np.ndarray | Sequence[Any]) -> list[dict[str, float]] | None:
        pipeline = self._fitted()
        if self.task_type not in CLASSIFICATION_TASKS or not hasattr(pipeline, "predict_proba"):
            return None
        classes = [str(label) for label in pipeline.classes_]
        rows = pipeline.predict_proba(self._features(inputs))
        return [{label: float(p) for label, p in zip(classes, row, strict=True)} for row in rows]

    def save(self, path: Path) -> None:
        payload = {
            "format": ARTIFACT_FORMAT,
            "task_type": self.task_type,
            "estimator": self.estimator_path,
            "feature_mode": str(self._feature_mode),
            "feature_count": self._feature_count,
            "pipeline": self._fitted(),
        }
        skops.io.dump(payload, path)

    @classmethod
    def load(cls, path: Path, spec: dict[str, Any]) -> Self:
        payload = _load_trusted_skops(path)
        if not isinstance(payload, dict) or payload.get("format") != ARTIFACT_FORMAT:
            raise ArtifactRefusedError(f"{path} is not a model file written by the scikit-learn trainer.")
        trainer = cls(spec, payload["task_type"])
        if payload["estimator"] != trainer.estimator_path:
            raise ArtifactRefusedError(
                f"{path} holds a {payload['estimator']} but the spec asks for {trainer.estimator_path}."
            )
        mode = FeatureMode(payload["feature_mode"])
        _check_pipeline_shape(payload["pipeline"], mode=mode, estimator_class=_import_estimator(trainer.estimator_path))
        saved_params = payload["pipeline"].named_steps["model"].get_params(deep=False)
        differing = sorted(key for key, value in trainer.params.items() if saved_params.get(key) != value)
        if differing:
            raise ArtifactRefusedError(f"{path} was trained with other values of {differing} than the spec gives.")
        trainer._pipeline = payload["pipeline"]
        trainer._feature_mode = mode
        trainer._feature_count = payload["feature_count"]
        return trainer

    def describe(self) -> dict[str, Any]:
        description: dict[str, Any] = {
            "trainer": self.name,
            "task_type": self.task_type,
            "estimator": self.estimator_path,
            "params": self.params,
            "feature_mode": str(self._feature_mode) if self._feature_mode else None,
            "feature_count": self._feature_count,
            "sklearn_version": sklearn.__version__,
        }
        if self._pipeline is not None and self.task_type in CLASSIFICATION_TASKS:
            description["classes"] = [str(label) for label in self._pipeline.classes_]
        return description

    def _estimator(self) -> Any:
        return _import_estimator(self.estimator_path)(**self.params)

    def _fitted(self) -> Pipeline:
        if self._pipeline is None:
            raise RuntimeError("The trainer has not been fitted or loaded yet.")
        return self._pipeline

    def _features(self, inputs: np.ndarray | Sequence[Any]) -> Any:
        self._fitted()
        assert self._feature_mode is not None
        return _feature_matrix(inputs, mode=self._feature_mode, feature_count=self._feature_count)


def _estimator_choice(*, spec: dict[str, Any], task_type: str) -> tuple[str, dict[str, JsonScalar | list]]:
    if not isinstance(spec, dict):
        raise TrainerSpecError("A training spec is a JSON object.")
    unknown_keys = set(spec) - SKLEARN_SPEC_KEYS
    if unknown_keys:
        raise TrainerSpecError(
            f"Unknown spec keys {sorted(unknown_keys)}; the sklearn trainer reads {sorted(SKLEARN_SPEC_KEYS)}."
        )
    wants_classifier = task_type in CLASSIFICATION_TASKS
    if "estimator" in spec:
        estimator_path, params = spec["estimator"], {}
    else:
        estimator_path, params = DEFAULT_CLASSIFIER if wants_classifier else DEFAULT_REGRESSOR
    _check_estimator_allowed(estimator_path, wants_classifier=wants_classifier)
    params = {**params, **_checked_params(spec.get("params", {}), estimator_path=estimator_path)}
    defaults = _import_estimator(estimator_path)().get_params(deep=False)
    # Retraining the same data with the same spec should give the same model, so differences between a candidate
    # and the champion come from the data rather than the random seed.
    if "random_state" in defaults and "random_state" not in params:
        params["random_state"] = 0
    return estimator_path, params


def _check_estimator_allowed(estimator_path: Any, *, wants_classifier: bool) -> None:
    allowed, other = (CLASSIFIERS, REGRESSORS) if wants_classifier else (REGRESSORS, CLASSIFIERS)
    kind, other_kind = ("classifier", "regressor") if wants_classifier else ("regressor", "classifier")
    if estimator_path in other:
        raise TrainerSpecError(f"{estimator_path} is a {other_kind}; this task needs a {kind}.")
    if estimator_path not in allowed:
        raise TrainerSpecError(
            f"Estimator {estimator_path!r} is not allowed; choose a {kind}: {', '.join(sorted(allowed))}."
        )


def _checked_params(params: Any, *, estimator_path: str) -> dict[str, JsonScalar | list]:
    if not isinstance(params, dict):
        raise TrainerSpecError("The spec's 'params' is a JSON object of estimator parameters.")
    accepted = _import_estimator(estimator_path)().get_params(deep=False)
    for key, value in params.items():
        if key not in accepted:
            raise TrainerSpecError(
                f"{estimator_path} has no parameter '{key}'; it takes: {', '.join(sorted(accepted))}."
            )
        if not _is_json_scalar(value) and not (isinstance(value, list) and all(map(_is_json_scalar, value))):
            raise TrainerSpecError(f"Parameter '{key}' must be a string, number, boolean, null or a list of those.")
    return dict(params)


def _is_json_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _import_estimator(estimator_path: str) -> type:
    # Checked here as well as in the spec so no code path can import a module named by a spec or a file.
    if estimator_path not in CLASSIFIERS | REGRESSORS:
        raise TrainerSpecError(f"Estimator {estimator_path!r} is not allowed.")
    module_name, class_name = estimator_path.rsplit(".", 1)
    return getattr(importlib.import_module(module_name), class_name)


def _featurizer(*, mode: FeatureMode, estimator_path: str) -> Any:
    dense_only = estimator_path in DENSE_ONLY_ESTIMATORS
    if mode is FeatureMode.DICT:
        return DictVectorizer(sparse=not dense_only)
    if mode is FeatureMode.TEXT:
        if dense_only:
            raise TrainerSpecError(f"{estimator_path} needs dense features; text is featurized sparse. Pick another.")
        return TfidfVectorizer()
    return "passthrough"


def _check_pipeline_shape(pipeline: Any, *, mode: FeatureMode, estimator_class: type) -> None:
    steps = pipeline.steps if isinstance(pipeline, Pipeline) else []
    if (
        [name for name, _ in steps] != ["features", "model"]
        or type(steps[1][1]) is not estimator_class
        or not _featurizer_matches(steps[0][1], mode=mode)
    ):
        raise ArtifactRefusedError("The model file does not hold the pipeline its header describes.")


def _featurizer_matches(featurizer: Any, *, mode: FeatureMode) -> bool:
    if mode is FeatureMode.DICT:
        return type(featurizer) is DictVectorizer
    if mode is FeatureMode.TEXT:
        return type(featurizer) is TfidfVectorizer
    return isinstance(featurizer, str) and featurizer == "passthrough"


def _load_trusted_skops(path: Path) -> Any:
    try:
        untrusted = skops.io.get_untrusted_types(file=path)
    except zipfile.BadZipFile as error:
        raise ArtifactRefusedError(f"{path} is not a skops file.") from error
    refused = [name for name in untrusted if not name.startswith(TRUSTED_MODULE_PREFIXES)]
    if refused:
        raise ArtifactRefusedError(
            f"Refusing to load {path}: it holds types outside scikit-learn/NumPy/SciPy: {refused}."
        )
    return skops.io.load(path, trusted=untrusted)


# --- features ---------------------------------------------------------------------------------------------------


def feature_mode_of(value: Any) -> FeatureMode:
    """How an input becomes features; raises `TrainingDataError` for a form no mode handles."""
    if isinstance(value, str):
        return FeatureMode.TEXT
    if isinstance(value, dict):
        return FeatureMode.DICT
    if _is_number(value):
        return FeatureMode.SCALAR
    if isinstance(value, list | tuple) and value and all(map(_is_number, value)):
        return FeatureMode.NUMERIC
    raise TrainingDataError(
        f"Cannot make features from {_preview(value)}: use a list of numbers, a number, an object or a string."
    )


def _feature_matrix(inputs: np.ndarray | Sequence[Any], *, mode: FeatureMode, feature_count: int | None) -> Any:
    if isinstance(inputs, np.ndarray):
        return _checked_number_matrix(inputs, mode=mode, feature_count=feature_count)
    for index, value in enumerate(inputs):
        _check_input(value, index=index, mode=mode, feature_count=feature_count)
    if mode is FeatureMode.NUMERIC:
        return np.asarray(inputs, dtype=np.float64).reshape(len(inputs), feature_count or 0)
    if mode is FeatureMode.SCALAR:
        return np.asarray(inputs, dtype=np.float64).reshape(-1, 1)
    if mode is FeatureMode.DICT:
        return [_flattened(value) for value in inputs]
    return list(inputs)


def _checked_number_matrix(matrix: np.ndarray, *, mode: FeatureMode, feature_count: int | None) -> np.ndarray:
    """The matrix itself (float64 is never copied), once its shape and values fit the model."""
    if mode is not FeatureMode.NUMERIC:
        raise TrainingDataError(f"The inputs are rows of numbers but this model takes {mode.label()}.")
    if matrix.ndim != 2 or matrix.shape[1] == 0:
        raise TrainingDataError(f"Rows of numbers come as a 2-D array, not one of shape {matrix.shape}.")
    if matrix.shape[1] != feature_count:
        raise TrainingDataError(f"The inputs have {matrix.shape[1]} numbers but this model takes {feature_count}.")
    if matrix.dtype != np.float64:
        matrix = np.asarray(matrix, dtype=np.float64)
    if not math.isfinite(matrix.sum()):  # one pass, no temporary array: a NaN or an infinity makes the sum one too
        for start, part in _blocks(matrix):
            bad = np.flatnonzero(~np.isfinite(part).all(axis=1))
            if len(bad):
                raise TrainingDataError(f"Input #{start + bad[0]} holds a number that is not finite.")
    return matrix


def _blocks(matrix: np.ndarray, rows: int = 65_536) -> Iterator[tuple[int, np.ndarray]]:
    return ((start, matrix[start : start + rows]) for start in range(0, len(matrix), rows))


def _input_mode(value: Any, *, index: int) -> FeatureMode:
    try:
        return feature_mode_of(value)
    except TrainingDataError as error:
        raise TrainingDataError(f"Input #{index}: {error}") from error


def _check_input(value: Any, *, index: int, mode: FeatureMode, feature_count: int | None) -> None:
    actual = _input_mode(value, index=index)
    if actual is not mode:
        raise TrainingDataError(f"Input #{index} is {actual.label()} but this model takes {mode.label()}.")
    if mode is FeatureMode.NUMERIC and len(value) != feature_count:
        raise TrainingDataError(f"Input #{index} has {len(value)} numbers but this model takes {feature_count}.")
    if mode in (FeatureMode.NUMERIC, FeatureMode.SCALAR) and not all(
        math.isfinite(number) for number in (value if mode is FeatureMode.NUMERIC else [value])
    ):
        raise TrainingDataError(f"Input #{index} holds a number that is not finite.")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float)


def _flattened(value: dict[str, Any]) -> dict[str, float | str]:
    features: dict[str, float | str] = {}
    for key, item in value.items():
        _flatten_into(features, key=str(key), value=item)
    return features


def _flatten_into(features: dict[str, float | str], *, key: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        for child_key, child in value.items():
            _flatten_into(features, key=f"{key}.{child_key}", value=child)
    elif isinstance(value, str):
        features[key] = value  # DictVectorizer one-hot encodes it as "key=value"
    elif _is_number(value):
        if math.isfinite(value):
            features[key] = float(value)
    elif isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        for item in value:
            features[f"{key}={item}"] = 1.0
    elif isinstance(value, list | tuple):
        for position, item in enumerate(value):
            _flatten_into(features, key=f"{key}[{position}]", value=item)
    else:
        features[key] = str(value)


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
