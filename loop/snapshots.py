"""Decoded training rows kept on disk between runs, so a retrain reads again only the rows labelled since the last.

One directory per model and database under `VAR_DIR/datasets/`:
- `matrix.f8`: the usable rows' inputs as raw little-endian float64, row after row, in training order (created_at,
  then id); a run maps it read-only as its feature matrix, after writing the rows that changed;
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
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from loop.durable import fsync_directory

FORMAT = "feedbackhub-snapshot-v1"
_ROW_ARRAYS = ("ids", "keys", "targets", "skipped")
_LONG_RUN_BYTES = 64 * 1024  # a run this long is read straight into place
_SPAN_BYTES = 8 * 1024 * 1024  # short runs are read together while the rows they span take at most this


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
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile):  # damaged: read everything
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
    """Copy stored matrix rows into `into`: each run is (first stored row, first destination row, row count), in
    stored order. Long runs are read straight into place; short ones near each other (rows labelled since the last
    run cut the stored rows into many) with one read of the rows they span, then placed by index."""
    row_bytes = width * 8
    short: list[tuple[int, int, int]] = []
    with (directory / "matrix.f8").open("rb", buffering=0) as file:
        for run in runs:
            if run[2] * row_bytes >= _LONG_RUN_BYTES:
                _read_into(file, run[0] * row_bytes, into[run[1] : run[1] + run[2]])
            else:
                if short and (run[0] + run[2] - short[0][0]) * row_bytes > _SPAN_BYTES:
                    _read_spanned(file, width, into, short)
                    short = []
                short.append(run)
        if short:
            _read_spanned(file, width, into, short)


def _read_spanned(file: Any, width: int, into: np.ndarray, runs: list[tuple[int, int, int]]) -> None:
    sources, destinations, counts = (np.array(column, dtype=np.int64) for column in zip(*runs, strict=True))
    first = int(sources[0])
    span = np.empty((int(sources[-1] + counts[-1]) - first, width))
    _read_into(file, first * width * 8, span)
    step = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
    into[np.repeat(destinations, counts) + step] = span[np.repeat(sources - first, counts) + step]


def _read_into(file: Any, offset: int, rows: np.ndarray) -> None:
    file.seek(offset)
    view = memoryview(rows).cast("B")
    while view:
        read = file.readinto(view)
        if not read:
            raise OSError(f"{file.name} is shorter than its snapshot says")
        view = view[read:]


def snapshot_write(directory: Path, snapshot: Snapshot, *, rows: np.ndarray, first_row: int) -> None:
    """Store `snapshot`, whose inputs from `first_row` on are `rows` (the stored file already holds the ones before:
    in the steady state only the rows labelled since the last run are written)."""
    snapshot_write_rows(directory, width=snapshot.width, rows=rows, first_row=first_row)
    snapshot_commit(directory, snapshot)


def snapshot_write_rows(directory: Path, *, width: int, rows: np.ndarray, first_row: int) -> None:
    """Write the matrix rows from `first_row` on; the snapshot is not trusted again until `snapshot_commit`.

    From row 0, a new file replaces the old one; otherwise the file is written in place and never made shorter, so a
    process that still maps it (a run taken for lost that is finishing) never reads past its end. In place, the rows
    reach the disk in `snapshot_commit`: a map of the file reads them from the page cache before that."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "meta.json").unlink(missing_ok=True)  # from here until the new one is in place, nothing is trusted
    fsync_directory(directory)  # the removal reaches the disk before any stored row changes
    data = np.ascontiguousarray(rows, dtype="<f8")
    path = directory / "matrix.f8"
    if first_row == 0:
        _replace(path, lambda out: out.write(memoryview(data).cast("B")) if data.size else None)
    elif data.size:
        with path.open("r+b") as file:
            file.seek(first_row * width * 8)
            file.write(memoryview(data).cast("B"))


def snapshot_commit(directory: Path, snapshot: Snapshot) -> None:
    """Make the written rows durable, then store the row arrays and, last, the metadata that makes it trusted."""
    with (directory / "matrix.f8").open("rb") as file:
        os.fsync(file.fileno())
    arrays = {name: getattr(snapshot, name) for name in _ROW_ARRAYS}
    _replace(directory / "rows.npz", lambda out: np.savez(out, **arrays))
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


def snapshot_matrix(directory: Path, *, rows: int, width: int) -> np.ndarray:
    """The stored inputs, mapped read-only: the page cache's copy, with nothing decoded or copied."""
    if not rows:
        return np.empty((0, width))
    return np.memmap(directory / "matrix.f8", dtype="<f8", mode="r", shape=(rows, width))


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
    fsync_directory(path.parent)
