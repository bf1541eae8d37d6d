"""Checks that a client's JSON can be stored as it is, on SQLite and PostgreSQL alike."""

import hashlib
import json
from typing import Any

MAX_DEPTH = 32


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored"
    if text.isascii():  # cannot hold a surrogate: skip the encode below
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate, which is not valid Unicode"
    return None


def storable_problem(value: Any, path: str = "") -> tuple[str, str] | None:
    """Return (path, problem) for the first part of `value` that cannot be stored, else None."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            return where or "body", f"is nested deeper than {MAX_DEPTH} levels"
        if isinstance(item, str):
            problem = _string_problem(item)
            if problem:
                return where or "body", problem
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{where}.{key}" if where else str(key)
                problem = _string_problem(str(key))
                if problem:
                    return child_path, f"key {problem}"
                stack.append((child, child_path, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{where}[{index}]", depth + 1) for index, child in enumerate(item))
    return None


def fingerprint(data: Any) -> str:
    """SHA-256 of a canonical JSON form: equal for a retry of the same body, different for any change."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
