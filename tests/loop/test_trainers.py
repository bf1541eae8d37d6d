import hashlib
import os
import pickle
import random
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io
from django.core.exceptions import ImproperlyConfigured
from sklearn import metrics
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from threadpoolctl import threadpool_info

from loop.artifacts import _HASHED_POSITIONS, ArtifactIntegrityError, artifact_load, artifact_save, dataset_hash
from loop.evaluation import MetricError, baseline_predictions, higher_is_better, improvement, score
from loop.trainers import (
    ArtifactRefusedError,
    FeatureMode,
    SklearnTrainer,
    TrainerSpecError,
    TrainingDataError,
    _feature_matrix,
    canonical_targets,
    label_array,
    sortable_labels,
    trainer_class,
    trainer_from_spec,
    training_blas_threads,
)
from tests.loop.centroid_trainer import CentroidTrainer

Dataset = tuple[list[Any], list[Any]]
WITH_CENTROID = {
    "sklearn": "loop.trainers.SklearnTrainer",
    "centroid": "tests.loop.centroid_trainer.CentroidTrainer",
}


def numeric_binary(count: int, seed: int) -> Dataset:
    rng = random.Random(seed)
    inputs = [[rng.uniform(-1, 1), rng.uniform(-1, 1)] for _ in range(count)]
    return inputs, [int(x + y > 0) for x, y in inputs]


def dict_multiclass(count: int, seed: int) -> Dataset:
    rng = random.Random(seed)
    kinds = {"red": "apple", "green": "leaf", "blue": "sky"}
    colors = [rng.choice(list(kinds)) for _ in range(count)]
    inputs = [
        {"color": color, "size": rng.random(), "meta": {"source": rng.choice(["a", "b"]), "tags": ["x"]}, "n": None}
        for color in colors
    ]
    return inputs, [kinds[color] for color in colors]


def text_binary(count: int, seed: int) -> Dataset:
    rng = random.Random(seed)
    good, bad, neutral = ["great", "love", "excellent"], ["awful", "hate", "broken"], ["the", "product", "it", "was"]
    labels = [rng.random() < 0.5 for _ in range(count)]
    inputs = [" ".join(rng.sample(neutral, 2) + [rng.choice(good if label else bad)]) for label in labels]
    return inputs, labels


def numeric_regression(count: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    inputs = rng.uniform(-1, 1, size=(count, 3))
    return inputs.tolist(), (inputs @ [3.0, -2.0, 0.5] + 1.0).tolist()


CLASSIFICATION_CASES = [
    pytest.param("binary", {}, numeric_binary, id="numeric-binary-default"),
    pytest.param("binary", {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier"}, numeric_binary, id="hgb"),
    pytest.param("multiclass", {}, dict_multiclass, id="dict-multiclass-default"),
    pytest.param(
        "multiclass",
        {"estimator": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 20}},
        dict_multiclass,
        id="dict-multiclass-forest",
    ),
    pytest.param("binary", {}, text_binary, id="text-binary-default"),
    pytest.param("binary", {"estimator": "sklearn.naive_bayes.MultinomialNB"}, text_binary, id="text-binary-nb"),
]


@pytest.mark.parametrize(("task_type", "spec", "make_data"), CLASSIFICATION_CASES)
def test_classifiers_learn_a_separable_problem(task_type: str, spec: dict, make_data: Any) -> None:
    train_inputs, train_targets = make_data(300, seed=1)
    test_inputs, test_targets = make_data(100, seed=2)
    trainer = trainer_from_spec(spec=spec, task_type=task_type)

    trainer.fit(train_inputs, train_targets)
    predictions = trainer.predict(test_inputs)
    probabilities = trainer.predict_proba(test_inputs)

    assert score(task_type=task_type, metric="accuracy", targets=test_targets, predictions=predictions) > 0.9
    assert all(isinstance(label, str) for label in predictions)
    assert probabilities is not None and len(probabilities) == len(test_inputs)
    classes = set(trainer.describe()["classes"])
    for row in probabilities:
        assert set(row) == classes
        assert sum(row.values()) == pytest.approx(1.0)


def test_binary_labels_come_back_canonical() -> None:
    inputs, targets = numeric_binary(200, seed=3)
    trainer = trainer_from_spec(spec={}, task_type="binary")

    trainer.fit(inputs, [bool(target) for target in targets])

    assert set(trainer.predict(inputs)) == {"0", "1"}
    assert trainer.describe()["classes"] == ["0", "1"]


def test_regression_learns_a_linear_function() -> None:
    train_inputs, train_targets = numeric_regression(300, seed=1)
    test_inputs, test_targets = numeric_regression(100, seed=2)
    trainer = trainer_from_spec(spec={}, task_type="regression")

    trainer.fit(train_inputs, train_targets)
    predictions = trainer.predict(test_inputs)

    assert all(isinstance(value, float) for value in predictions)
    assert score(task_type="regression", metric="mae", targets=test_targets, predictions=predictions) < 0.1
    assert trainer.predict_proba(test_inputs) is None
    assert trainer.describe()["estimator"] == "sklearn.linear_model.Ridge"


def test_a_single_number_is_one_feature() -> None:
    trainer = trainer_from_spec(spec={"estimator": "sklearn.linear_model.LinearRegression"}, task_type="regression")

    trainer.fit([1, 2, 3.5, 4], [2.0, 4.0, 7.0, 8.0])

    assert trainer.predict([10]) == [pytest.approx(20.0)]
    assert trainer.describe()["feature_mode"] == "scalar"


def test_a_classifier_without_probabilities_gives_none() -> None:
    inputs, targets = numeric_binary(100, seed=4)
    trainer = trainer_from_spec(spec={"estimator": "sklearn.svm.LinearSVC"}, task_type="binary")

    trainer.fit(inputs, targets)

    assert trainer.predict_proba(inputs) is None


def test_describe_reports_what_was_trained() -> None:
    trainer = trainer_from_spec(
        spec={"trainer": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression", "params": {"C": 0.5}},
        task_type="binary",
    )
    trainer.fit(*numeric_binary(50, seed=5))

    description = trainer.describe()

    assert description["trainer"] == "sklearn"
    assert description["estimator"] == "sklearn.linear_model.LogisticRegression"
    assert description["params"] == {"C": 0.5, "random_state": 0}
    assert description["feature_mode"] == "numeric"
    assert description["feature_count"] == 2


def test_a_matrix_of_numbers_trains_like_the_same_lists_without_a_copy() -> None:
    inputs, targets = numeric_binary(200, seed=12)
    matrix = np.array(inputs)
    from_lists, from_matrix = SklearnTrainer({}, "binary"), SklearnTrainer({}, "binary")

    from_lists.fit(inputs, targets)
    from_matrix.fit(matrix, np.array([str(target) for target in targets], dtype=object))

    assert from_matrix.predict(matrix) == from_lists.predict(inputs) == from_matrix.predict(inputs)
    assert from_matrix.describe() == from_lists.describe()
    assert _feature_matrix(matrix, mode=FeatureMode.NUMERIC, feature_count=2) is matrix


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.array([[1.0, 2.0], [np.inf, 0.0], [np.nan, 1.0]]), "Input #1 holds a number that is not finite"),
        (np.ones((3, 3)), "have 3 numbers but this model takes 2"),
        (np.ones(3), "2-D array"),
    ],
)
def test_a_matrix_the_model_cannot_use_is_refused(matrix: np.ndarray, message: str) -> None:
    trainer = fitted_numeric_trainer()

    with pytest.raises(TrainingDataError, match=message):
        trainer.predict(matrix)


def test_a_matrix_is_refused_by_a_model_trained_on_objects() -> None:
    trainer = trainer_from_spec(spec={}, task_type="multiclass")
    trainer.fit(*dict_multiclass(30, seed=13))

    with pytest.raises(TrainingDataError, match="rows of numbers but this model takes an object"):
        trainer.predict(np.ones((2, 2)))


def test_canonical_targets_are_checked_by_their_distinct_values() -> None:
    labels = np.array(["1", "0", "1"], dtype=object)

    assert canonical_targets(task_type="binary", targets=labels) is labels
    assert canonical_targets(task_type="binary", targets=[1, True, "no"]).tolist() == ["1", "1", "0"]
    assert canonical_targets(task_type="multiclass", targets=[1, 1.0, "1"]).tolist() == ["1", "1", "1"]
    with pytest.raises(TrainingDataError, match=r"Target #1 \(True\)"):
        canonical_targets(task_type="multiclass", targets=[1, True])
    floats = np.array([1.5, -2.0])
    assert canonical_targets(task_type="regression", targets=floats) is floats
    with pytest.raises(TrainingDataError, match="Target #0"):
        canonical_targets(task_type="regression", targets=np.array([np.nan]))


def test_fixed_width_label_arrays_are_checked_in_c_and_kept_as_they_are() -> None:
    labels = label_array(["1", "0", "1"])
    assert labels.dtype == np.dtype("<U1")
    assert canonical_targets(task_type="binary", targets=labels) is labels
    assert sortable_labels(labels) is labels
    assert canonical_targets(task_type="binary", targets=np.array(["yes", "0"])).tolist() == ["1", "0"]
    assert canonical_targets(task_type="multiclass", targets=np.array(["b", "a"])).tolist() == ["b", "a"]
    long_label = "x" * 33  # longer labels stay Python strings: a fixed width costs 4 bytes a character a row
    assert label_array([long_label, "y"]).dtype == object
    assert label_array(["a\x00", "b"]).tolist() == ["a\x00", "b"]  # a fixed width would drop the trailing NUL
    assert sortable_labels(np.array(["b", "a"], dtype=object)).tolist() == ["b", "a"]


def test_the_dataset_hash_of_labels_is_the_same_fixed_width_or_as_objects() -> None:
    targets = ["b", "a", "é", "10", "2", "A", "b"]
    matrix = np.arange(14, dtype=np.float64).reshape(7, 2)
    ids = np.arange(7)

    as_objects = dataset_hash(ids=ids, inputs=matrix, targets=np.array(targets, dtype=object))

    assert as_objects == dataset_hash(ids=ids, inputs=matrix, targets=label_array(targets))
    assert as_objects != dataset_hash(ids=ids, inputs=matrix, targets=label_array(targets[::-1]))


def test_the_dataset_hash_of_fixed_width_labels_reads_them_in_slices_without_changing() -> None:
    """Fixed-width labels are hashed a slice of rows at a time: over several slices, and with the last one short,
    the hash is the one of the same labels as objects, whose positions are hashed at once."""
    rows = 3 * _HASHED_POSITIONS + 5
    targets = np.random.default_rng(3).choice(["no", "yes", "maybe"], size=rows)
    ids = np.arange(rows)
    matrix = np.zeros((rows, 1))

    as_objects = dataset_hash(ids=ids, inputs=matrix, targets=targets.astype(object))

    assert targets.dtype.kind == "U"
    assert dataset_hash(ids=ids, inputs=matrix, targets=targets) == as_objects
    changed = targets.copy()
    changed[-1] = "no" if changed[-1] != "no" else "yes"  # in the short last slice
    assert dataset_hash(ids=ids, inputs=matrix, targets=changed) != as_objects


def blas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


@pytest.mark.skipif(not blas_threads(), reason="no BLAS library that threadpoolctl can limit")
def test_training_keeps_to_the_configured_blas_threads(settings: Any) -> None:
    before = blas_threads()
    settings.FEEDBACKHUB_TRAINING_BLAS_THREADS = 1
    with training_blas_threads():
        assert blas_threads() == {1}
    assert blas_threads() == before
    settings.FEEDBACKHUB_TRAINING_BLAS_THREADS = 0  # the libraries' own default
    with training_blas_threads():
        assert blas_threads() == before


# --- artifacts --------------------------------------------------------------------------------------------------

ROUND_TRIP_CASES = [
    pytest.param("binary", {}, numeric_binary, id="numeric-logistic"),
    pytest.param(
        "multiclass",
        {"estimator": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 10}},
        dict_multiclass,
        id="dict-forest",
    ),
    pytest.param(
        "binary", {"estimator": "sklearn.neighbors.KNeighborsClassifier", "params": {"n_neighbors": 3}}, text_binary
    ),
    pytest.param(
        "multiclass", {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier"}, dict_multiclass, id="dict-hgb"
    ),
    pytest.param("regression", {"estimator": "sklearn.tree.DecisionTreeRegressor"}, numeric_regression, id="tree"),
]


@pytest.mark.parametrize(("task_type", "spec", "make_data"), ROUND_TRIP_CASES)
def test_save_and_load_give_the_same_predictions(tmp_path: Path, task_type: str, spec: dict, make_data: Any) -> None:
    inputs, targets = make_data(120, seed=6)
    trainer = trainer_from_spec(spec=spec, task_type=task_type)
    trainer.fit(inputs, targets)

    info = artifact_save(trainer=trainer, directory=tmp_path / "models", name="m-1")
    loaded = artifact_load(path=info.path, sha256=info.sha256, spec=spec, task_type=task_type)

    assert loaded.predict(inputs) == trainer.predict(inputs)
    assert loaded.predict_proba(inputs) == trainer.predict_proba(inputs)
    assert loaded.describe() == trainer.describe()
    assert info.path == tmp_path / "models" / "m-1.skops"
    assert info.sha256 == hashlib.sha256(info.path.read_bytes()).hexdigest()
    assert info.size == info.path.stat().st_size
    assert zipfile.is_zipfile(info.path)  # skops' format; a pickle would not be a zip archive
    assert "schema.json" in zipfile.ZipFile(info.path).namelist()
    assert os.listdir(tmp_path / "models") == ["m-1.skops"]


def fitted_numeric_trainer() -> SklearnTrainer:
    trainer = SklearnTrainer({}, "binary")
    trainer.fit(*numeric_binary(60, seed=7))
    return trainer


def test_a_changed_file_is_refused(tmp_path: Path) -> None:
    info = artifact_save(trainer=fitted_numeric_trainer(), directory=tmp_path, name="m")
    content = bytearray(info.path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    info.path.write_bytes(bytes(content))

    with pytest.raises(ArtifactIntegrityError, match="changed since it was saved"):
        artifact_load(path=info.path, sha256=info.sha256, spec={}, task_type="binary")


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_file_holding_an_untrusted_type_is_refused(tmp_path: Path) -> None:
    header = {"format": 1, "task_type": "binary", "estimator": "sklearn.linear_model.LogisticRegression"}
    sneaky = Pipeline([("features", FunctionTransformer(func=os.system)), ("model", LogisticRegression())])
    path = tmp_path / "sneaky.skops"
    skops.io.dump({**header, "feature_mode": "numeric", "feature_count": 2, "pipeline": sneaky}, path)

    with pytest.raises(ArtifactRefusedError, match=rf"{os.system.__module__}\.system"):
        artifact_load(path=path, sha256=sha256_of(path), spec={}, task_type="binary")


def test_a_pickle_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.skops"
    path.write_bytes(pickle.dumps({"format": 1}))

    with pytest.raises(ArtifactRefusedError, match="not a skops file"):
        artifact_load(path=path, sha256=sha256_of(path), spec={}, task_type="binary")


def test_a_file_not_matching_its_spec_is_refused(tmp_path: Path) -> None:
    info = artifact_save(trainer=fitted_numeric_trainer(), directory=tmp_path, name="m")

    with pytest.raises(ArtifactRefusedError, match="spec asks for"):
        artifact_load(
            path=info.path, sha256=info.sha256, spec={"estimator": "sklearn.svm.LinearSVC"}, task_type="binary"
        )
    with pytest.raises(ArtifactRefusedError, match="C"):
        artifact_load(path=info.path, sha256=info.sha256, spec={"params": {"C": 9.0}}, task_type="binary")
    with pytest.raises(TrainerSpecError, match="binary model but a multiclass"):
        artifact_load(path=info.path, sha256=info.sha256, spec={}, task_type="multiclass")


def test_saving_replaces_the_file_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    first = artifact_save(trainer=fitted_numeric_trainer(), directory=tmp_path, name="m")
    trainer = SklearnTrainer({}, "binary")
    trainer.fit(*numeric_binary(60, seed=8))

    second = artifact_save(trainer=trainer, directory=tmp_path, name="m")

    assert second.path == first.path and second.sha256 != first.sha256
    assert os.listdir(tmp_path) == ["m.skops"]


def test_a_failed_save_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not been fitted"):
        artifact_save(trainer=SklearnTrainer({}, "binary"), directory=tmp_path, name="m")

    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["", "../escape", "a/b", ".hidden"])
def test_artifact_names_cannot_leave_the_directory(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="Artifact name"):
        artifact_save(trainer=fitted_numeric_trainer(), directory=tmp_path, name=name)


def json_rows_hash(ids: list[int], inputs: list[Any], targets: list[str]) -> str:
    return dataset_hash(ids=np.array(ids), inputs=inputs, targets=np.array(targets, dtype=object))


def test_dataset_hash_of_json_inputs_is_canonical_and_sensitive() -> None:
    ids, inputs, targets = [1, -2], [{"a": 1, "b": "x"}, {"c": [0.5, 2]}], ["1", "0"]

    digest = json_rows_hash(ids, inputs, targets)

    assert digest == json_rows_hash(ids, [{"b": "x", "a": 1}, {"c": [0.5, 2]}], targets)
    assert digest != json_rows_hash(ids, inputs, ["0", "0"])
    assert digest != json_rows_hash([1, 2], inputs, targets)
    assert digest != json_rows_hash(ids[::-1], inputs[::-1], targets[::-1])
    assert len(json_rows_hash([], [], [])) == 64


def test_dataset_hash_of_a_number_matrix_is_sensitive_to_every_value() -> None:
    ids, matrix, targets = np.array([3, -1, 7]), np.arange(6, dtype=np.float64).reshape(3, 2), np.array([0.5, 1, 2])
    digest = dataset_hash(ids=ids, inputs=matrix, targets=targets)
    changed_input = matrix.copy()
    changed_input[2, 1] = np.nextafter(5.0, 6.0)

    assert digest == dataset_hash(ids=ids.copy(), inputs=matrix[:, :].copy(), targets=targets.copy())
    assert digest != dataset_hash(ids=ids, inputs=changed_input, targets=targets)
    assert digest != dataset_hash(ids=ids, inputs=matrix.reshape(2, 3), targets=targets)
    assert digest != dataset_hash(ids=np.array([3, 1, 7]), inputs=matrix, targets=targets)
    assert digest != dataset_hash(ids=ids, inputs=matrix, targets=np.array([0.5, 1, 2.5]))
    assert digest != dataset_hash(ids=ids, inputs=matrix.tolist(), targets=targets)


# --- specs and inputs that are refused --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "estimator", ["os.system", "builtins.eval", "sklearn.svm.SVC", "sklearn.linear_model.LogisticRegression.fit", 3]
)
def test_estimators_off_the_allow_list_are_refused(estimator: Any) -> None:
    with pytest.raises(TrainerSpecError, match="not allowed"):
        trainer_from_spec(spec={"estimator": estimator}, task_type="binary")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"C": 1.0, "not_a_param": 1}, "no parameter 'not_a_param'"),
        ({"C": {"nested": 1}}, "Parameter 'C' must be"),
        ({"class_weight": [[1]]}, "Parameter 'class_weight' must be"),
        ([1, 2], "'params' is a JSON object"),
    ],
)
def test_bad_params_are_refused(params: Any, message: str) -> None:
    with pytest.raises(TrainerSpecError, match=message):
        trainer_from_spec(
            spec={"estimator": "sklearn.linear_model.LogisticRegression", "params": params}, task_type="binary"
        )


def test_estimator_must_fit_the_task() -> None:
    with pytest.raises(TrainerSpecError, match="is a classifier; this task needs a regressor"):
        trainer_from_spec(spec={"estimator": "sklearn.ensemble.RandomForestClassifier"}, task_type="regression")
    with pytest.raises(TrainerSpecError, match="is a regressor; this task needs a classifier"):
        trainer_from_spec(spec={"estimator": "sklearn.linear_model.Ridge"}, task_type="multiclass")


@pytest.mark.parametrize(("task_type", "message"), [("generative", "Generative"), ("ranking", "Unknown task type")])
def test_untrainable_tasks_are_refused(task_type: str, message: str) -> None:
    with pytest.raises(TrainerSpecError, match=message):
        trainer_from_spec(spec={}, task_type=task_type)


def test_unknown_spec_keys_and_trainers_are_refused() -> None:
    with pytest.raises(TrainerSpecError, match="Unknown spec keys"):
        trainer_from_spec(spec={"estimater": "sklearn.linear_model.Ridge"}, task_type="regression")
    with pytest.raises(TrainerSpecError, match="Unknown trainer 'torch'; known trainers: sklearn"):
        trainer_from_spec(spec={"trainer": "torch"}, task_type="binary")


def test_text_cannot_feed_an_estimator_that_needs_dense_features() -> None:
    trainer = trainer_from_spec(
        spec={"estimator": "sklearn.ensemble.HistGradientBoostingClassifier"}, task_type="binary"
    )

    with pytest.raises(TrainerSpecError, match="needs dense features"):
        trainer.fit(*text_binary(40, seed=9))


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ([[1.0, 2.0], {"a": 1}], r"Input #1 is an object but this model takes a list of numbers"),
        ([[1.0, 2.0], [1.0]], "Input #1 has 1 numbers but this model takes 2"),
        (["text", 3], "Input #1 is a number but this model takes a string"),
        ([[1.0, 2.0], [1.0, None]], "Input #1: Cannot make features"),
        ([[1.0, float("nan")], [1.0, 2.0]], "Input #0 holds a number that is not finite"),
        ([None, None], "Input #0: Cannot make features from None"),
    ],
)
def test_inputs_of_mixed_forms_are_refused(inputs: list[Any], message: str) -> None:
    trainer = trainer_from_spec(spec={}, task_type="binary")

    with pytest.raises(TrainingDataError, match=message):
        trainer.fit(inputs, [0, 1])


def test_prediction_inputs_must_match_the_training_form() -> None:
    trainer = fitted_numeric_trainer()

    with pytest.raises(TrainingDataError, match="is a string but this model takes a list of numbers"):
        trainer.predict(["hello"])


def test_targets_that_do_not_fit_the_task_are_refused() -> None:
    trainer = trainer_from_spec(spec={}, task_type="binary")

    with pytest.raises(TrainingDataError, match=r"Target #1 \('maybe'\)"):
        trainer.fit([[0.0], [1.0]], [0, "maybe"])
    with pytest.raises(TrainingDataError, match="needs two classes"):
        trainer.fit([[0.0], [1.0]], [1, 1])
    with pytest.raises(TrainingDataError, match="2 inputs but 1 targets"):
        trainer.fit([[0.0], [1.0]], [1])


# --- the registry and a second framework -------------------------------------------------------------------------


def test_without_the_setting_only_sklearn_is_known(settings: Any) -> None:
    if hasattr(settings, "FEEDBACKHUB_TRAINERS"):
        del settings.FEEDBACKHUB_TRAINERS

    assert trainer_class("sklearn") is SklearnTrainer
    with pytest.raises(TrainerSpecError, match="known trainers: sklearn"):
        trainer_class("centroid")


def test_a_misconfigured_registry_says_so(settings: Any) -> None:
    settings.FEEDBACKHUB_TRAINERS = {"broken": "tests.loop.no_such_module.Trainer", "function": "os.path.join"}

    with pytest.raises(ImproperlyConfigured, match="cannot be imported"):
        trainer_class("broken")
    with pytest.raises(ImproperlyConfigured, match="is not a class"):
        trainer_class("function")


def test_a_second_framework_plugs_in_through_settings(settings: Any, tmp_path: Path) -> None:
    settings.FEEDBACKHUB_TRAINERS = WITH_CENTROID
    spec = {"trainer": "centroid"}
    train_inputs, train_targets = numeric_binary(200, seed=10)
    test_inputs, test_targets = numeric_binary(100, seed=11)

    trainer = trainer_from_spec(spec=spec, task_type="binary")
    trainer.fit(train_inputs, train_targets)
    info = artifact_save(trainer=trainer, directory=tmp_path, name="centroid-v1")
    loaded = artifact_load(path=info.path, sha256=info.sha256, spec=spec, task_type="binary")

    assert isinstance(loaded, CentroidTrainer)
    assert (
        score(task_type="binary", metric="accuracy", targets=test_targets, predictions=loaded.predict(test_inputs))
        > 0.9
    )
    assert loaded.predict(test_inputs) == trainer.predict(test_inputs)
    assert loaded.predict_proba(test_inputs) == trainer.predict_proba(test_inputs)
    assert loaded.describe() == {"trainer": "centroid", "task_type": "binary", "classes": ["0", "1"]}
    with pytest.raises(TrainerSpecError, match="cannot train a regression model"):
        trainer_from_spec(spec=spec, task_type="regression")


# --- evaluation -------------------------------------------------------------------------------------------------

BINARY_TARGETS = ["1", "0", "1", "1", "0", "0", "1", "0"]
BINARY_PREDICTIONS = ["1", "1", "1", "0", "0", "0", "1", "1"]
MULTICLASS_TARGETS = ["a", "b", "c", "a", "b", "c", "a", "a"]
MULTICLASS_PREDICTIONS = ["a", "b", "b", "a", "c", "c", "b", "a"]


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("accuracy", metrics.accuracy_score(BINARY_TARGETS, BINARY_PREDICTIONS)),
        ("f1", metrics.f1_score(BINARY_TARGETS, BINARY_PREDICTIONS, pos_label="1")),
        ("precision", metrics.precision_score(BINARY_TARGETS, BINARY_PREDICTIONS, pos_label="1")),
        ("recall", metrics.recall_score(BINARY_TARGETS, BINARY_PREDICTIONS, pos_label="1")),
    ],
)
def test_binary_scores_match_scikit_learn(metric: str, expected: float) -> None:
    # Targets as the collector may hold them (ints, booleans) score the same as canonical labels.
    raw_targets = [int(label) if index % 2 else label == "1" for index, label in enumerate(BINARY_TARGETS)]

    assert score(task_type="binary", metric=metric, targets=raw_targets, predictions=BINARY_PREDICTIONS) == expected


@pytest.mark.parametrize(
    ("metric", "function"),
    [("f1", metrics.f1_score), ("precision", metrics.precision_score), ("recall", metrics.recall_score)],
)
def test_multiclass_scores_are_macro_averaged(metric: str, function: Any) -> None:
    expected = function(MULTICLASS_TARGETS, MULTICLASS_PREDICTIONS, average="macro", zero_division=0)

    actual = score(
        task_type="multiclass", metric=metric, targets=MULTICLASS_TARGETS, predictions=MULTICLASS_PREDICTIONS
    )

    assert actual == expected


def test_regression_scores_match_scikit_learn() -> None:
    targets, predictions = [1.0, 2.5, 3.0, 7], [1.5, 2.0, 3.0, 5.0]

    assert score(task_type="regression", metric="mae", targets=targets, predictions=predictions) == (
        metrics.mean_absolute_error(targets, predictions)
    )
    assert score(task_type="regression", metric="rmse", targets=targets, predictions=predictions) == (
        metrics.root_mean_squared_error(targets, predictions)
    )


def test_precision_without_positive_predictions_is_zero() -> None:
    assert score(task_type="binary", metric="precision", targets=["1", "0"], predictions=["0", "0"]) == 0.0


def test_metrics_must_fit_the_task() -> None:
    with pytest.raises(MetricError, match="does not fit a regression model"):
        score(task_type="regression", metric="accuracy", targets=[1.0], predictions=[1.0])
    with pytest.raises(MetricError, match="Unknown metric"):
        higher_is_better("auc")


def test_baselines() -> None:
    assert baseline_predictions(task_type="binary", train_targets=[1, 0, True, "0", 1], count=3) == ["1", "1", "1"]
    assert baseline_predictions(task_type="multiclass", train_targets=["b", "a", "b", "a"], count=2) == ["a", "a"]
    assert baseline_predictions(task_type="regression", train_targets=[1, 2, 6], count=2) == [3.0, 3.0]


def test_improvement_is_positive_when_the_candidate_is_better() -> None:
    assert higher_is_better("accuracy") and not higher_is_better("mae")
    assert improvement(metric="accuracy", candidate=0.9, champion=0.8) == pytest.approx(0.1)
    assert improvement(metric="accuracy", candidate=0.7, champion=0.8) == pytest.approx(-0.1)
    assert improvement(metric="mae", candidate=1.0, champion=1.5) == pytest.approx(0.5)
    assert improvement(metric="rmse", candidate=2.0, champion=1.5) == pytest.approx(-0.5)
