"""A trainer with no scikit-learn in it, to prove the `Trainer` interface is enough for another framework."""

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from loop.trainers import CLASSIFICATION_TASKS, TrainerSpecError, TrainingDataError, canonical_targets


class CentroidTrainer:
    """Nearest centroid over lists of numbers; probabilities are a softmax over negative distances."""

    name: ClassVar[str] = "centroid"

    def __init__(self, spec: dict[str, Any], task_type: str) -> None:
        if task_type not in CLASSIFICATION_TASKS:
            raise TrainerSpecError(f"The centroid trainer classifies; it cannot train a {task_type} model.")
        if set(spec) - {"trainer"}:
            raise TrainerSpecError("The centroid trainer takes no settings.")
        self.task_type = task_type
        self._labels: list[str] = []
        self._centroids = np.empty((0, 0))

    def fit(self, inputs: np.ndarray | Sequence[Any], targets: Sequence[Any]) -> None:
        features = self._matrix(inputs)
        labels = np.asarray(canonical_targets(task_type=self.task_type, targets=targets))
        self._labels = sorted(set(labels.tolist()))
        self._centroids = np.stack([features[labels == label].mean(axis=0) for label in self._labels])

    def predict(self, inputs: np.ndarray | Sequence[Any]) -> list[Any]:
        nearest = self._distances(inputs).argmin(axis=1)
        return [self._labels[index] for index in nearest]

    def predict_proba(self, inputs: np.ndarray | Sequence[Any]) -> list[dict[str, float]] | None:
        closeness = -self._distances(inputs)
        weights = np.exp(closeness - closeness.max(axis=1, keepdims=True))
        probabilities = weights / weights.sum(axis=1, keepdims=True)
        return [dict(zip(self._labels, map(float, row), strict=True)) for row in probabilities]

    def save(self, path: Path) -> None:
        # A file object, because numpy.savez appends ".npz" to a path that lacks it.
        with path.open("wb") as file:
            np.savez(file, centroids=self._centroids, labels=np.asarray(self._labels), task_type=self.task_type)

    @classmethod
    def load(cls, path: Path, spec: dict[str, Any]) -> Self:
        with np.load(path, allow_pickle=False) as saved:
            trainer = cls(spec, str(saved["task_type"]))
            trainer._centroids = saved["centroids"]
            trainer._labels = [str(label) for label in saved["labels"]]
        return trainer

    def describe(self) -> dict[str, Any]:
        return {"trainer": self.name, "task_type": self.task_type, "classes": self._labels}

    def _distances(self, inputs: np.ndarray | Sequence[Any]) -> np.ndarray:
        features = self._matrix(inputs)
        return np.linalg.norm(features[:, None, :] - self._centroids[None, :, :], axis=2)

    def _matrix(self, inputs: np.ndarray | Sequence[Any]) -> np.ndarray:
        if isinstance(inputs, np.ndarray):  # a training run's rows of numbers
            matrix = inputs
        elif all(isinstance(value, list) for value in inputs):  # JSON inputs when serving
            matrix = np.asarray(inputs, dtype=np.float64)
        else:
            raise TrainingDataError("The centroid trainer takes lists of numbers.")
        if matrix.ndim != 2 or (self._centroids.size and matrix.shape[1] != self._centroids.shape[1]):
            raise TrainingDataError("The centroid trainer takes lists of numbers of the length it was trained on.")
        return matrix
