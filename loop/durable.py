"""Making a change to a folder's entries (a rename, a removal) reach the disk, for the loop's files that must survive
a crash: model artifacts and dataset snapshots."""

import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
