"""Model files on disk: written atomically, identified by SHA-256, and checked before they are loaded again."""

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loop.durable import fsync_directory
from loop.trainers import DEFAULT_TRAINER, Trainer, TrainerSpecError, check_trainable_task, trainer_class

ARTIFACT_SUFFIX = ".skops"
_ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_DATASET_HASH_HEADER = b"feedbackhub-dataset-v2\n"
_HASHED_POSITIONS = 65_536  # rows of targets whose label positions are hashed at once


class ArtifactIntegrityError(ValueError):
    """The model file is not the one that was saved."""


@dataclass(frozen=True)
class ArtifactInfo:
    path: Path
    sha256: str
    size: int


def artifact_save(*, trainer: Trainer, directory: Path, name: str) -> ArtifactInfo:
    """Write `<directory>/<name>.skops`, replacing any file of that name only once the new one is complete."""
    if not _ARTIFACT_NAME.fullmatch(name):
        raise ValueError(
            f"Artifact name {name!r} must be 1-200 letters, digits, '.', '_' or '-', not starting with '.'."
        )
    directory.mkdir(parents=True, exist_ok=True)
    final_path = directory / f"{name}{ARTIFACT_SUFFIX}"
    # Same directory, so os.replace is an atomic rename: readers see the old file or the whole new one.
    handle, temporary_name = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    os.close(handle)
    temporary_path = Path(temporary_name)
    try:
        trainer.save(temporary_path)
        sha256, size = _fsynced_digest(temporary_path)
        os.replace(temporary_path, final_path)
    except BaseException:
        temporary_path.unlink(missing_ok=True)
        raise
    fsync_directory(directory)
    return ArtifactInfo(path=final_path, sha256=sha256, size=size)


def artifact_load(*, path: Path, sha256: str, spec: dict[str, Any], task_type: str) -> Trainer:
    """The trainer saved at `path`, once the file's SHA-256 matches the one recorded when it was saved."""
    actual, _ = _digest(path)
    if actual != sha256.lower():
        raise ArtifactIntegrityError(
            f"{path} has changed since it was saved (SHA-256 {actual}, expected {sha256}); refusing to load it."
        )
    check_trainable_task(task_type=task_type)
    if not isinstance(spec, dict):
        raise TrainerSpecError("A training spec is a JSON object.")
    name = spec.get("trainer", DEFAULT_TRAINER)
    trainer = trainer_class(name).load(path, spec)
    loaded_task = trainer.describe().get("task_type")
    if loaded_task != task_type:
        raise TrainerSpecError(f"{path} holds a {loaded_task} model but a {task_type} model was expected.")
    return trainer


def dataset_hash(*, ids: np.ndarray, inputs: np.ndarray | Sequence[Any], targets: np.ndarray) -> str:
    """SHA-256 over training rows in the order given: their ids, inputs and canonical targets.

    Arrays are hashed as bytes, so a million numeric rows need no per-row Python objects. After the header:
    - "rows <n>", then the ids as little-endian int64 (a prediction's pk, or minus a labelled example's pk);
    - "numbers <k>", then the input matrix as little-endian float64 row by row; or "json", then one canonical JSON
      line per input (equal whatever the dict key order);
    - "labels <sorted JSON list of the distinct labels>", then each target's index in it as little-endian int64;
      or "floats", then the targets as little-endian float64.
    """
    digest = hashlib.sha256(_DATASET_HASH_HEADER)
    digest.update(f"rows {len(ids)}\n".encode())
    digest.update(np.ascontiguousarray(ids, dtype="<i8"))
    _hash_inputs(digest, inputs)
    _hash_targets(digest, targets)
    return digest.hexdigest()


def _hash_inputs(digest: "hashlib._Hash", inputs: np.ndarray | Sequence[Any]) -> None:
    if isinstance(inputs, np.ndarray):
        digest.update(f"numbers {inputs.shape[1] if inputs.ndim == 2 else 1}\n".encode())
        digest.update(np.ascontiguousarray(inputs, dtype="<f8"))
        return
    digest.update(b"json\n")
    for value in inputs:
        # JSON escapes newlines inside strings, so one input per line cannot be confused with two.
        digest.update(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii"))
        digest.update(b"\n")


def _hash_targets(digest: "hashlib._Hash", targets: np.ndarray) -> None:
    if targets.dtype == np.float64:
        digest.update(b"floats\n")
        digest.update(np.ascontiguousarray(targets, dtype="<f8"))
        return
    if targets.dtype.kind == "U":  # fixed-width str sorts by code point in C, as Python's sorted() orders str
        distinct = np.unique(targets)
        digest.update(f"labels {json.dumps(distinct.tolist(), ensure_ascii=True)}\n".encode("ascii"))
        # A slice at a time: a training run hashes beside the fit, and np.unique's inverse of every row at once made
        # several int64 arrays as long as the targets, which added to the run's peak of memory.
        for first in range(0, len(targets), _HASHED_POSITIONS):
            positions = np.searchsorted(distinct, targets[first : first + _HASHED_POSITIONS])
            digest.update(positions.astype("<i8", copy=False))
        return
    values = targets.tolist()
    labels = sorted(set(values))
    position = {label: index for index, label in enumerate(labels)}
    positions = np.fromiter(map(position.__getitem__, values), dtype="<i8", count=len(values))
    digest.update(f"labels {json.dumps(labels, ensure_ascii=True)}\n".encode("ascii"))
    digest.update(positions)


def _digest(path: Path) -> tuple[str, int]:
    with path.open("rb") as file:
        digest = hashlib.file_digest(file, "sha256")
        return digest.hexdigest(), file.tell()


def _fsynced_digest(path: Path) -> tuple[str, int]:
    # The database will point at this file once the caller commits, so it must be on disk before the rename.
    with path.open("rb+") as file:
        os.fsync(file.fileno())
        digest = hashlib.file_digest(file, "sha256")
        return digest.hexdigest(), file.tell()
