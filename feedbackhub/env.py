"""Typed readers for settings that come from the environment.

Each reader fails loudly with ImproperlyConfigured on a value it cannot use, so a typo in a deployment
stops the process at start-up instead of silently falling back to a default.
"""

import os
import re
import secrets
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: str) -> bool:
    value = os.environ.get(name, default).strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {value!r}")


def env_int(name: str, default: str, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name, default).strip()
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, got {value}")
    return value


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_mapping(name: str, default: str) -> dict[str, str]:
    """`key=value,key2=value2` as a dict."""
    mapping = {}
    for item in env_list(name, default):
        key, separator, value = item.partition("=")
        if not separator or not key.strip() or not value.strip():
            raise ImproperlyConfigured(f"{name} is a comma-separated list of name=value pairs, got {item!r}")
        mapping[key.strip()] = value.strip()
    return mapping


class Rate(NamedTuple):
    """At most `requests` in each window of `seconds` (DRF's rate syntax: `6000/min`)."""

    requests: int
    seconds: int


_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")
_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(name: str, raw: str) -> Rate | None:
    """`N/period` (s, min, hour, day) as a Rate; `off` for no limit."""
    if raw.strip().lower() == "off":
        return None
    match = _RATE.match(raw.lower())
    if match is None or int(match[1]) < 1:
        raise ImproperlyConfigured(f"{name} must look like 6000/min (per s, min, hour or day) or be off, got {raw!r}")
    return Rate(int(match[1]), _PERIODS[match[2][0]])


def env_rate(name: str, default: str) -> str:
    """A rate (see parse_rate), checked here so a bad one stops the process at start-up."""
    raw = os.environ.get(name, default).strip()
    parse_rate(name, raw)
    return raw


def env_cache(name: str, default_dir: Path) -> dict[str, Any]:
    """A Django cache from a URL: `redis://` or `rediss://` (shared by every machine), `file:///path`
    (every process of one machine), `locmem://` (one process only). Empty: a file cache in `default_dir`."""
    raw = os.environ.get(name, "").strip()
    url = urlsplit(raw)
    scheme = url.scheme if raw else "file"
    if scheme in ("redis", "rediss"):
        return {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": raw}
    if scheme == "file":
        location = url.path if raw else str(default_dir)
        if url.netloc or not location.startswith("/"):
            raise ImproperlyConfigured(f"{name} needs an absolute path (file:///var/cache/feedbackhub), got {raw!r}")
        return {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache", "LOCATION": location}
    if scheme == "locmem":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    raise ImproperlyConfigured(f"{name} must be a redis://, rediss://, file:/// or locmem:// URL, got {raw!r}")


def generated_secret(path: Path) -> str:
    """Read a secret from `path`, creating it (mode 0600) on first use.

    The file is written under a temporary name and hard-linked into place, so processes starting at the
    same moment all end up with the one secret that won.
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(50))
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    secret = path.read_text().strip()
    if not secret:
        raise ImproperlyConfigured(f"{path} is empty: delete it to generate a new secret key")
    return secret
