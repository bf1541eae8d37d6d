"""Decoded training rows kept on disk between runs, so a retrain reads again only the rows labelled since the last.

One directory per model and database under `VAR_DIR/datasets/`:
- `matrix.f8`: the usable rows' inputs as raw little-endian float64, row after row, in training order (created_at,
  then id); read with plain file reads into the run's own matrix (never memory-mapped: mapped pages would count
  twice against the run's memory);
- `rows.npz`: per usable row its id, time key (microseconds since the epoch) and target (a float, or a code into the
  label list of `meta.json`), and the ids of the labelled rows that were skipped;
- `meta.json`: written last and removed first, so files without it are never trusted.

What is trusted, and when a full read is done instead, is decided in `loop.datasets`.
"""

import contextlib
import fcntl
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "feedbackhub-snapshot-v1"
_ROW_ARRAYS = ("ids", "keys", "targets", "skipped")


@dataclass
class Snapshot:
    """Usable rows in training order plus the ids of skipped ones; `labels` is None for float targets."""

    identity: dict[str, Any]  # what the rows were read for (model, task type, width): another identity is ignored
    read_at: datetime  # when the read that made it began
    watermark: int  # the highest prediction id it has seen
    width: int
    ids: np.ndarray
    keys: np.ndarray
    targets: np.ndarray
    skipped: np.ndarray
    labels: list[str] | None

    def __len__(self) -> int:
        return len(self.ids)


@contextlib.contextmanager
def snapshot_lock(directory: Path) -> Iterator[bool]:
    """Whether this process holds the directory: one run per model is the rule, and this makes it certain."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def snapshot_load(directory: Path, *, identity: dict[str, Any]) -> Snapshot | None:
    try:
        meta = json.loads((directory / "meta.json").read_text())
        if meta.get("format") != FORMAT or meta.get("identity") != identity:
            return None
        with np.load(directory / "rows.npz") as arrays:
            rows = {name: arrays[name] for name in _ROW_ARRAYS}
        if (directory / "matrix.f8").stat().st_size < len(rows["ids"]) * meta["width"] * 8:
            return None
    except (OSError, ValueError, KeyError):
        return None
    return Snapshot(
        identity=identity,
        read_at=datetime.fromisoformat(meta["read_at"]),
        watermark=meta["watermark"],
        width=meta["width"],
        labels=meta["labels"],
        **rows,
    )


def snapshot_read_rows(directory: Path, *, width: int, into: np.ndarray, runs: list[tuple[int, int, int]]) -> None:
    """Copy stored matrix rows into `into`: each run is (first stored row, first destination row, row count)."""
    row_bytes = width * 8
    with (directory / "matrix.f8").open("rb", buffering=0) as file:
        for source, destination, count in runs:
            file.seek(source * row_bytes)
            view = memoryview(into[destination : destination + count]).cast("B")
            while view:
                read = file.readinto(view)
                if not read:
                    raise OSError(f"{directory / 'matrix.f8'} is shorter than its snapshot says")
                view = view[read:]


def snapshot_write(directory: Path, snapshot: Snapshot, *, matrix: np.ndarray, unchanged_rows: int) -> None:
    """Store `snapshot`, whose inputs are `matrix`; the stored file's first `unchanged_rows` rows already hold
    matrix's first rows, so only the rest is written (in the steady state, the rows labelled since the last run)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "meta.json").unlink(missing_ok=True)  # from here until the new one is in place, nothing is trusted
    path = directory / "matrix.f8"
    row_bytes = snapshot.width * 8
    with path.open("r+b" if path.exists() else "wb") as file:
        file.truncate(unchanged_rows * row_bytes)
        file.seek(unchanged_rows * row_bytes)
        rest = np.ascontiguousarray(matrix[unchanged_rows:], dtype="<f8")
        if rest.size:
            file.write(memoryview(rest).cast("B"))
        file.flush()
        os.fsync(file.fileno())
    rows = {name: getattr(snapshot, name) for name in _ROW_ARRAYS}
    _replace(directory / "rows.npz", lambda out: np.savez(out, **rows))
    meta = {
        "format": FORMAT,
        "identity": snapshot.identity,
        "read_at": snapshot.read_at.isoformat(),
        "watermark": snapshot.watermark,
        "width": snapshot.width,
        "labels": snapshot.labels,
        "rows": len(snapshot),
    }
    _replace(directory / "meta.json", lambda out: out.write(json.dumps(meta).encode()))


def snapshot_discard(directory: Path) -> None:
    (directory / "meta.json").unlink(missing_ok=True)


def _replace(path: Path, write: Any) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            write(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    descriptor = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
