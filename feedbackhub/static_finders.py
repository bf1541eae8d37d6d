"""Serve Plotly's own browser bundle, as shipped in the `plotly` package, at `static/vendor/plotly.min.js`.

The dashboard draws its charts with it; taking the file from the installed package (rather than a copy in this
repository or a CDN) keeps it versioned by pyproject.toml and the pages working offline."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import plotly
from django.contrib.staticfiles.finders import BaseFinder
from django.core.files.storage import FileSystemStorage

PREFIX = "vendor"
BUNDLE = "plotly.min.js"


class PlotlyFinder(BaseFinder):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.storage = FileSystemStorage(location=Path(plotly.__file__).parent / "package_data")
        self.storage.prefix = PREFIX  # collectstatic places the file under this folder

    def check(self, **kwargs: Any) -> list:
        return []

    def find(self, path: str, find_all: bool = False, **kwargs: Any) -> str | list[str]:
        if path != f"{PREFIX}/{BUNDLE}":
            return [] if find_all else ""
        location = self.storage.path(BUNDLE)
        return [location] if find_all else location

    def list(self, ignore_patterns: Any) -> Iterator[tuple[str, FileSystemStorage]]:
        yield BUNDLE, self.storage
