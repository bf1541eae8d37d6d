"""A per-API-key limit on writes, counted in the shared cache so that every web process sees the same count."""

import math
import threading
import time
from dataclasses import dataclass
from functools import cache as memoize
from typing import Any

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from collector.models import ApiKey
from feedbackhub.env import Rate, parse_rate


@memoize
def _write_rate(raw: str) -> Rate | None:
    return parse_rate("FEEDBACKHUB_WRITE_RATE", raw)


# A process tells the shared cache about its writes in steps of 1% of the limit (every write for limits under 200),
# so the cache is touched once per step rather than on every write; a limit can be overshot by at most one
# step per web process.
_STEPS_PER_LIMIT = 100


@dataclass
class _Tally:
    """One process's view of a key's current window: the shared count it last saw, and its writes since."""

    counter: str
    shared: int = 0
    unreported: int = 0


_tallies: dict[str, _Tally] = {}
_tallies_lock = threading.Lock()


def _shared_add(counter: str, hits: int, timeout: int) -> int:
    try:
        return cache.incr(counter, hits)
    except ValueError:  # the window's first write
        return hits if cache.add(counter, hits, timeout=timeout) else cache.incr(counter, hits)


def write_hit(*, key_prefix: str, rate: Rate, now: float) -> int:
    """Count one write of the key in the current window: 0 when it is allowed, else the seconds until the next window.

    Fixed windows aligned on the clock: one counter per key and window in the shared cache, incremented
    atomically on Redis (on the file cache two processes racing may both read the same count, so the limit is
    approximate there).
    """
    window = int(now // rate.seconds)
    counter = f"throttle:write:{key_prefix}:{window}"
    step = max(1, rate.requests // _STEPS_PER_LIMIT)
    with _tallies_lock:
        tally = _tallies.get(key_prefix)
        if tally is None or tally.counter != counter:
            tally = _tallies[key_prefix] = _Tally(counter)
        tally.unreported += 1
        if tally.unreported >= step or tally.shared + tally.unreported > rate.requests:
            tally.shared = _shared_add(counter, tally.unreported, rate.seconds + 1)
            tally.unreported = 0
        count = tally.shared + tally.unreported
    if count <= rate.requests:
        return 0
    return max(1, math.ceil((window + 1) * rate.seconds - now))


class WriteRateThrottle(BaseThrottle):
    """FEEDBACKHUB_WRITE_RATE writes per API key. Permissions run first, so only accepted keys are counted."""

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method not in SAFE_METHODS and isinstance(request.auth, ApiKey):
            count_write(request.auth)
        return True


def count_write(api_key: ApiKey) -> None:
    """Count one write of `api_key`; Throttled (a 429 with Retry-After) when it is over FEEDBACKHUB_WRITE_RATE."""
    rate = _write_rate(settings.FEEDBACKHUB_WRITE_RATE)
    if rate is None:
        return
    wait = write_hit(key_prefix=api_key.prefix, rate=rate, now=time.time())
    if wait:
        # Raised rather than returned as False, so the error names the limit, not only the wait.
        limit = settings.FEEDBACKHUB_WRITE_RATE
        raise Throttled(wait, f"This API key sent more than {limit} writes (FEEDBACKHUB_WRITE_RATE).")
