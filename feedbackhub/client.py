"""FeedbackHub's Python client: log predictions, outcomes and human feedback without slowing the caller.

    from feedbackhub.client import FeedbackCollector

    feedback_collector = FeedbackCollector()  # FEEDBACKHUB_URL, FEEDBACKHUB_API_KEY, FEEDBACKHUB_MODEL
    feedback_collector.log_feedback(
        input_data=test_data, prediction=predictions, actual_value=true_labels, model_version="v1.0", latency=0.012
    )

Each call only appends to an in-memory queue; a daemon thread turns the events into JSON and sends them in
batches, retries when the hub is busy or away, and (with `spool_path=`) keeps what it cannot send in a local
SQLite file until the hub answers again. Every event carries an event_id, so a resend is never stored twice.

Only the standard library is used: importing this module never imports Django.
"""

import atexit
import collections
import dataclasses
import datetime
import email.utils
import functools
import http.client
import json
import logging
import math
import os
import random
import re
import sqlite3
import threading
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

logger = logging.getLogger("feedbackhub.client")

PREDICTIONS = "/api/v1/predictions/"
OUTCOMES = "/api/v1/outcomes/"
FEEDBACK = "/api/v1/feedback/"
DEFAULT_URL = "http://127.0.0.1:8000"
UNVERSIONED = "unversioned"
SERVER_MAX_BATCH = 1000  # the hub's FEEDBACKHUB_MAX_BATCH default
SERVER_MAX_BODY_BYTES = 5 * 1024 * 1024  # the hub's FEEDBACKHUB_MAX_BODY_BYTES default
_NOUNS = {PREDICTIONS: "prediction", OUTCOMES: "outcome", FEEDBACK: "feedback"}
_ITEM_FIELD = re.compile(r"^\[(\d+)\]\.?")
_MAX_RETRY_AFTER = 600.0
_WARN_EVERY_SECONDS = 5.0
_TAKE_AT_ONCE = 1000


@dataclasses.dataclass(slots=True)
class _Encoded:
    """One event as the JSON the hub takes, ready to send or spool."""

    endpoint: str
    payload: str
    label: str
    seq: int = 0
    spool_id: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class _Answer:
    status: int | None  # None: no HTTP answer at all (refused, reset, timed out)
    problem: str
    fields: tuple[tuple[str, str], ...] = ()
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status == 429 or self.status >= 500


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # urllib would turn a redirected POST into a body-less GET; a redirect means FEEDBACKHUB_URL is wrong.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _Spool:
    """Events waiting for the hub, in a local SQLite file that outlives the process."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        with self._connection:
            self._connection.execute(
                "CREATE TABLE IF NOT EXISTS spool "
                "(id INTEGER PRIMARY KEY, endpoint TEXT NOT NULL, payload TEXT NOT NULL)"
            )

    def count(self) -> int:
        return self._connection.execute("SELECT COUNT(*) FROM spool").fetchone()[0]

    def add(self, items: Sequence[_Encoded]) -> None:
        with self._connection:
            self._connection.executemany(
                "INSERT INTO spool (endpoint, payload) VALUES (?, ?)", [(i.endpoint, i.payload) for i in items]
            )

    def oldest(self, limit: int) -> list[_Encoded]:
        rows = self._connection.execute("SELECT id, endpoint, payload FROM spool ORDER BY id LIMIT ?", (limit,))
        return [
            _Encoded(endpoint, payload, f"spooled #{row_id}", spool_id=row_id) for row_id, endpoint, payload in rows
        ]

    def delete(self, ids: Sequence[int]) -> int:
        with self._connection:
            cursor = self._connection.executemany("DELETE FROM spool WHERE id = ?", [(row_id,) for row_id in ids])
        return cursor.rowcount

    def close(self) -> None:
        self._connection.close()


class FeedbackCollector:
    """Sends predictions, outcomes and feedback to FeedbackHub from a background thread.

    `url`, `api_key` and `model` default to the environment variables FEEDBACKHUB_URL (else
    http://127.0.0.1:8000), FEEDBACKHUB_API_KEY and FEEDBACKHUB_MODEL; with no model at all the hub files events
    under its default model.

    Batches go out when `batch_size` events are waiting or `flush_interval` seconds have passed. A batch the hub
    cannot take (no answer, 429 or 5xx) is retried `max_retries` times with jittered exponential backoff
    (`backoff_base` to `backoff_max` seconds, or the hub's Retry-After); after that the hub counts as away: with
    `spool_path` the events wait in that SQLite file (and are sent oldest first when the hub is back, also by the
    next process using the same file), without it they wait in memory, where at most `max_queue` are kept and the
    oldest are dropped first. Events the hub refuses (400, 403, 409, ...) are logged with its reason and counted
    in `rejected`; the rest of their batch is sent on.

    `task_type` (binary, multiclass, regression or generative) goes with every prediction; the hub uses it only
    when that prediction registers a new model, instead of guessing from it (a regression model whose first
    prediction is 1.0 would otherwise be registered as binary and its later predictions refused).

    The seed logger's `db_path=` is accepted as a keyword and ignored (with a warning): events go to the hub now,
    and `spool_path=` is the local file. It is keyword-only because the first positional argument is `url`.

    Values are read by the background thread, so do not change a list or array after logging it. Values JSON
    cannot hold are converted there: `.tolist()` for numpy-like objects, ISO 8601 for dates and times, lists for
    sets, dicts for dataclasses, `str()` for anything else; NaN and infinities become null.

    close() runs by itself at interpreter exit; like any close(), it may take up to its timeout (5 s) when the hub
    does not answer and there is no spool.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        *,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_queue: int = 10_000,
        max_retries: int = 3,
        spool_path: str | os.PathLike[str] | None = None,
        timeout: float = 10.0,
        backoff_base: float = 0.1,
        backoff_max: float = 10.0,
        task_type: str | None = None,
        db_path: str | None = None,
    ) -> None:
        _require(1 <= batch_size <= SERVER_MAX_BATCH, f"batch_size is 1 to {SERVER_MAX_BATCH}")
        _require(flush_interval > 0 and timeout > 0, "flush_interval and timeout are more than 0 seconds")
        _require(max_queue >= 1 and max_retries >= 0, "max_queue is 1 or more and max_retries 0 or more")
        _require(0 < backoff_base <= backoff_max, "backoff_base is more than 0 and at most backoff_max")
        self.url = (url or os.environ.get("FEEDBACKHUB_URL") or DEFAULT_URL).rstrip("/")
        _require(
            self.url.startswith(("http://", "https://")),
            f"url must start with http:// or https://, not {self.url!r} (the seed's db_path is now a keyword)",
        )
        if db_path is not None:
            logger.warning(
                "db_path=%r is ignored: events go to FeedbackHub at %s (spool_path= keeps a local file)",
                db_path,
                self.url,
            )
        api_key = api_key or os.environ.get("FEEDBACKHUB_API_KEY") or ""
        if not api_key:
            logger.warning("No API key: set FEEDBACKHUB_API_KEY (or api_key=); FeedbackHub will refuse every event")
        self.model = model or os.environ.get("FEEDBACKHUB_MODEL") or None
        self.task_type = task_type
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "feedbackhub-client/0.1",
            **({"Authorization": f"Bearer {api_key}"} if api_key else {}),
        }
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._max_queue = max_queue
        self._max_retries = max_retries
        self._timeout = timeout
        self._backoff_base = backoff_base
        self._backoff_max = backoff_max
        self._opener = urllib.request.build_opener(_NoRedirects())
        self._spool_path = os.fspath(spool_path) if spool_path is not None else None
        self._sent = 0
        self._dropped = 0
        self._rejected = 0
        self._closed = False
        self._last_warned: dict[str, float] = {}
        self._start()
        atexit.register(self._close_at_exit)
        os.register_at_fork(after_in_child=functools.partial(_restart_in_child, weakref.ref(self)))

    def _start(self) -> None:
        """State shared with the background thread, and the thread itself (again in a forked child)."""
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._queue: collections.deque[tuple[int, str, Any]] = collections.deque()
        self._seq = 0
        self._hand_seq: int | None = None  # the oldest event the thread holds outside the queue
        self._hand_count = 0
        self._flush_requests = 0
        self._wakeup = threading.Event()
        self._closing = threading.Event()
        self._size_wakeups = True
        self._deadline = math.inf
        self._outage_failures = 0
        self._retry_at = 0.0
        self._spool = _Spool(self._spool_path) if self._spool_path else None
        self._spool_rows = self._spool.count() if self._spool else 0
        if self._spool_rows:
            logger.info(
                "%d events wait in the spool %s; sending them to %s", self._spool_rows, self._spool_path, self.url
            )
        self._thread = threading.Thread(target=self._run, name=f"feedbackhub-client-{id(self):x}", daemon=True)
        self._thread.start()

    # --- the caller's side: capture and append, nothing more -------------------------------------------------

    def log_feedback(
        self,
        input_data: Any,
        prediction: Any,
        actual_value: Any = None,
        model_version: str | None = None,
        latency: float | None = None,
        confidence_score: float | None = None,
        *,
        model: str | None = None,
        event_id: str | None = None,
        interaction_id: str | None = None,
        **attributes: Any,
    ) -> str:
        """Queue one prediction (latency in seconds; extra keywords become attributes) and return its event_id."""
        event_id = os.urandom(16).hex() if event_id is None else str(event_id)
        fields = (
            time.time(),
            event_id,
            input_data,
            prediction,
            actual_value,
            model_version,
            latency,
            confidence_score,
            model,
            interaction_id,
            attributes,
        )
        self._enqueue(PREDICTIONS, fields)
        return event_id

    def log_outcome(self, event_id: str, actual: Any, *, model: str | None = None) -> None:
        """Queue the real outcome of the prediction logged with `event_id` (before or after it arrives)."""
        self._enqueue(OUTCOMES, (str(event_id), actual, model))

    def log_user_feedback(
        self,
        kind: str,
        *,
        prediction_event_id: str | None = None,
        interaction_id: str | None = None,
        value: Any = None,
        comment: str = "",
        source: str = "",
        model: str | None = None,
        event_id: str | None = None,
    ) -> str:
        """Queue human feedback: thumbs_up, thumbs_down, rating (value 1-5), correction (value) or comment."""
        event_id = os.urandom(16).hex() if event_id is None else str(event_id)
        fields = (time.time(), event_id, kind, prediction_event_id, interaction_id, value, comment, source, model)
        self._enqueue(FEEDBACK, fields)
        return event_id

    def _enqueue(self, endpoint: str, fields: tuple) -> None:
        with self._lock:
            self._seq += 1
            queue = self._queue
            overflow = self._closed or len(queue) >= self._max_queue
            if self._closed:
                self._dropped += 1
            else:
                if overflow:
                    queue.popleft()
                    self._dropped += 1
                queue.append((self._seq, endpoint, fields))
            full = len(queue) >= self._batch_size
        if full and self._size_wakeups and not self._wakeup.is_set():
            self._wakeup.set()
        if overflow:
            self._warn_dropped()

    def _warn_dropped(self) -> None:
        if self._closed:
            self._warn_at_most_every("closed", "FeedbackCollector is closed: %d events dropped so far", self._dropped)
        else:
            self._warn_at_most_every(
                "queue full",
                "FeedbackHub client queue is full (max_queue=%d, hub at %s not keeping up): dropped the oldest: "
                "%d so far",
                self._max_queue,
                self.url,
                self._dropped,
            )

    def _warn_at_most_every(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_warned.get(key, -math.inf) >= _WARN_EVERY_SECONDS:
            self._last_warned[key] = now
            logger.warning(message, *args)

    # --- control and observability ---------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Send what is queued now; True when all of it was delivered, refused by the hub, or spooled."""
        with self._lock:
            target = self._seq
            dropped_before = self._dropped
            self._flush_requests += 1
        self._wakeup.set()
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        with self._settled:
            while self._oldest_unsettled() <= target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    return False
                self._settled.wait(min(remaining, 1.0))
            return self._dropped == dropped_before

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (spool what cannot go within `timeout` seconds) and stop the thread."""
        with self._lock:
            already_closed, self._closed = self._closed, True
            if not already_closed:
                self._deadline = time.monotonic() + timeout
        atexit.unregister(self._close_at_exit)
        self._closing.set()
        self._wakeup.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout + 1.0)
        if self._thread.is_alive():
            logger.warning("FeedbackHub client thread is still sending after close(timeout=%s)", timeout)

    def _close_at_exit(self) -> None:
        self.close()

    def __enter__(self) -> "FeedbackCollector":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def sent(self) -> int:
        """Events the hub confirmed (stored now, or already stored by an earlier try)."""
        return self._sent

    @property
    def dropped(self) -> int:
        """Events lost on this side: the queue was full, or the client closed before the hub took them."""
        return self._dropped

    @property
    def rejected(self) -> int:
        """Events the hub refused (bad value, reused event_id, bad key, ...) or that could not be made JSON."""
        return self._rejected

    @property
    def queued(self) -> int:
        """Events in memory, not sent yet (approximate while the thread works)."""
        return len(self._queue) + self._hand_count

    @property
    def spooled(self) -> int:
        """Events waiting in the spool file."""
        return self._spool_rows

    # --- the background thread -------------------------------------------------------------------------------

    def _run(self) -> None:
        next_due = time.monotonic() + self._flush_interval
        seen_flushes = 0
        while not self._closing.is_set():
            now = time.monotonic()
            probe_due = self._outage_failures > 0 and now >= self._retry_at
            due = now >= next_due or self._flush_requests != seen_flushes or probe_due
            if due:
                seen_flushes = self._flush_requests
                next_due = now + self._flush_interval
            self._work_safely(everything=due)
            now = time.monotonic()
            wait = next_due - now
            if self._outage_failures and self._retry_at > now:
                wait = min(wait, self._retry_at - now)
            self._wakeup.wait(max(wait, 0.0))
            self._wakeup.clear()
        self._final_pass()

    def _work_safely(self, everything: bool) -> None:
        try:
            self._work(everything)
        except Exception:
            # A bug or a broken spool must not stop the thread: later events still deserve a try.
            logger.exception("FeedbackHub client failed while sending; %d events in hand are lost", self._hand_count)
            with self._settled:
                self._dropped += self._hand_count
                self._release_hand(self._hand_count)
            self._pause(1.0)

    def _work(self, everything: bool) -> None:
        """Send what is due: the spool's backlog first (oldest first), then the queue."""
        while True:
            if self._in_outage():
                if self._spool:
                    self._spool_queue()
                return
            if self._spool_rows:
                self._spool_queue()  # behind the backlog, to keep the order
                if not self._send_spooled():
                    return
                continue
            batch = self._take(everything, self._batch_size)
            if not batch:
                return
            self._send_batch(batch)

    def _final_pass(self) -> None:
        """Until the close deadline: send everything, or spool it; then drop what is left in memory."""
        self._retry_at = 0.0  # the hub may be back since the last try: give it one more now
        try:
            while time.monotonic() < self._deadline:
                self._work(everything=True)
                if not self._queue and not (self._spool_rows and not self._in_outage()):
                    break
                if self._in_outage():
                    if self._spool:
                        break  # everything is in the spool: the next process sends it
                    self._pause(min(self._retry_at, self._deadline) - time.monotonic())
            leftover = self._take(True, len(self._queue))
            if leftover:
                logger.warning(
                    "FeedbackHub at %s did not take %d events before close(); they are dropped", self.url, len(leftover)
                )
                with self._settled:
                    self._dropped += len(leftover)
                    self._release_hand(len(leftover))
        except Exception:
            logger.exception("FeedbackHub client failed while closing")
        finally:
            if self._spool:
                self._spool.close()
            with self._settled:
                self._settled.notify_all()

    def _take(self, everything: bool, limit: int) -> list[tuple[int, str, Any]]:
        with self._lock:
            waiting = len(self._queue)
            if not waiting or (not everything and waiting < self._batch_size):
                return []
            batch = [self._queue.popleft() for _ in range(min(waiting, limit))]
            if self._hand_seq is None:  # else an older batch is in hand (this one is spilled while it retries)
                self._hand_seq = batch[0][0]
            self._hand_count += len(batch)
            return batch

    def _release_hand(self, count: int) -> None:
        """Call holding self._settled: `count` events in hand are settled (sent, refused, spooled, dropped, back)."""
        self._hand_count -= count
        if self._hand_count <= 0:
            self._hand_seq, self._hand_count = None, 0
        self._settled.notify_all()

    def _oldest_unsettled(self) -> float:
        oldest = self._queue[0][0] if self._queue else math.inf
        return oldest if self._hand_seq is None else min(oldest, self._hand_seq)

    def _send_batch(self, batch: list[tuple[int, str, Any]]) -> None:
        items = [item for item in map(self._encode, batch) if item is not None]
        undelivered: list[_Encoded] = []
        for endpoint, group in _by_endpoint(items):
            if undelivered:
                undelivered += group
            else:
                undelivered = self._deliver(endpoint, group)
        if undelivered:
            self._keep_for_later(undelivered)
        with self._settled:
            self._release_hand(len(batch))

    def _spool_queue(self) -> None:
        """Move every queued event to the spool, so memory never overflows while the hub is away."""
        while batch := self._take(True, _TAKE_AT_ONCE):
            spooled = self._keep_for_later([item for item in map(self._encode, batch) if item is not None])
            with self._settled:
                self._release_hand(len(batch))
            if not spooled:
                return

    def _send_spooled(self) -> bool:
        """Send the oldest spooled batch; False when the hub did not take it."""
        assert self._spool is not None
        oldest = self._spool.oldest(self._batch_size)
        if not oldest:  # another process sharing the file sent them
            self._spool_rows = 0
        return all(not self._deliver(endpoint, group) for endpoint, group in _by_endpoint(oldest))

    def _keep_for_later(self, items: list[_Encoded]) -> bool:
        """Spool events the hub cannot take now (True), or put them back at the head of the queue (False)."""
        fresh = [item for item in items if item.spool_id is None]
        if not fresh:
            return True
        if self._spool:
            try:
                self._spool.add(fresh)
                self._spool_rows += len(fresh)
                return True
            except sqlite3.Error as error:
                logger.error("Could not write to the spool %s (%s); keeping events in memory", self._spool_path, error)
        with self._lock:
            self._queue.extendleft((item.seq, item.endpoint, item) for item in reversed(fresh))
            overflow = max(0, len(self._queue) - self._max_queue)
            for _ in range(overflow):
                self._queue.popleft()
            self._dropped += overflow
        if overflow:
            self._warn_dropped()
        return False

    # --- turning events into JSON ----------------------------------------------------------------------------

    def _encode(self, entry: tuple[int, str, Any]) -> _Encoded | None:
        seq, endpoint, fields = entry
        if isinstance(fields, _Encoded):
            return fields
        event_id = str(fields[1] if endpoint != OUTCOMES else fields[0])
        try:
            payload = _dumps(_BUILDERS[endpoint](fields, self.model, self.task_type))
        except Exception as error:  # whatever the caller's objects raise while being converted
            self._rejected += 1
            logger.error("Could not turn %s %s into JSON, so it is not sent: %r", _NOUNS[endpoint], event_id, error)
            return None
        return _Encoded(endpoint, payload, event_id, seq)

    # --- talking to the hub ----------------------------------------------------------------------------------

    def _deliver(self, endpoint: str, items: list[_Encoded]) -> list[_Encoded]:
        """Send events to one endpoint; return those the hub could not take now (away or busy)."""
        groups = list(reversed(_split_by_body_size(items)))  # a stack: the oldest group on top
        while groups:
            group = groups.pop()
            answer = self._post_with_retries(endpoint, group)
            if answer.retryable:
                return group + [item for rest in reversed(groups) for item in rest]
            if answer.ok:
                self._sent += len(group)
                self._forget_spooled(group)
            elif answer.status == 413 and len(group) > 1:
                half = len(group) // 2
                groups += [group[half:], group[:half]]
            else:
                refused = _refused_positions(answer, len(group))
                self._refuse(endpoint, group, refused, answer)
                rest = [item for i, item in enumerate(group) if i not in refused]
                if rest:
                    groups.append(rest)
        return []

    def _refuse(self, endpoint: str, group: list[_Encoded], positions: set[int], answer: _Answer) -> None:
        items = [group[position] for position in sorted(positions)]
        self._rejected += len(items)
        self._forget_spooled(items)
        noun = _NOUNS[endpoint]
        if answer.status in (401, 403) and not answer.fields:
            logger.error(
                "FeedbackHub at %s refused the API key (HTTP %s: %s); %d %s events dropped. Check FEEDBACKHUB_API_KEY.",
                self.url,
                answer.status,
                answer.problem,
                len(items),
                noun,
            )
            return
        reasons = _reasons_by_position(answer.fields)
        for position in sorted(positions):
            logger.error(
                "FeedbackHub refused %s %s (HTTP %s): %s",
                noun,
                _label(group[position]),
                answer.status,
                reasons.get(position, answer.problem),
            )

    def _forget_spooled(self, items: list[_Encoded]) -> None:
        ids = [item.spool_id for item in items if item.spool_id is not None]
        if ids and self._spool:
            self._spool_rows = max(0, self._spool_rows - self._spool.delete(ids))

    def _post_with_retries(self, endpoint: str, group: list[_Encoded]) -> _Answer:
        body = ("[" + ",".join(item.payload for item in group) + "]").encode("ascii")
        attempts = 1 if self._outage_failures else self._max_retries + 1  # while the hub is away: one probe
        for attempt in range(attempts):
            answer = self._post(endpoint, body)
            if not answer.retryable:
                self._end_outage()
                return answer
            delay = self._backoff(attempt, answer.retry_after)
            # A long Retry-After is waited out as an outage, with the batch spooled or queued, not held here.
            if attempt == attempts - 1 or delay > self._backoff_max or time.monotonic() + delay > self._deadline:
                break
            if self._spool and len(self._queue) >= self._max_queue // 2:
                self._spool_queue()
            self._pause(delay)
        self._start_or_extend_outage(answer)
        return answer

    def _post(self, endpoint: str, body: bytes) -> _Answer:
        # The constructor allows only http:// and https:// URLs.
        request = urllib.request.Request(self.url + endpoint, data=body, headers=self._headers, method="POST")  # noqa: S310
        timeout = min(self._timeout, max(0.1, self._deadline - time.monotonic()))
        try:
            with self._opener.open(request, timeout=timeout) as response:
                response.read()
                return _Answer(response.status, "")
        except urllib.error.HTTPError as error:
            try:
                with error:
                    text = error.read()
            except (OSError, http.client.HTTPException):
                text = b""
            problem, fields = _error_of(text, error)
            return _Answer(error.code, problem, fields, _retry_after_seconds(error.headers.get("Retry-After")))
        except (OSError, http.client.HTTPException, ValueError) as error:
            return _Answer(None, str(getattr(error, "reason", error)) or type(error).__name__)

    def _pause(self, seconds: float) -> None:
        """Sleep, but wake at once when close() is called (after that, sleep in full: closing needs the pauses)."""
        if seconds <= 0:
            return
        if self._closing.is_set():
            time.sleep(seconds)
        else:
            self._closing.wait(seconds)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        jittered = random.uniform(0, min(self._backoff_max, self._backoff_base * 2 ** min(attempt, 30)))
        return jittered if retry_after is None else max(jittered, retry_after)

    def _in_outage(self) -> bool:
        return self._outage_failures > 0 and time.monotonic() < self._retry_at

    def _start_or_extend_outage(self, answer: _Answer) -> None:
        self._outage_failures += 1
        delay = self._backoff(self._max_retries + self._outage_failures, answer.retry_after)
        self._retry_at = time.monotonic() + delay
        # Size wake-ups would spin while events can only wait in memory; flushes and close still wake the thread.
        self._size_wakeups = self._spool is not None
        if self._outage_failures == 1:
            keeping = f"spooling events to {self._spool_path}" if self._spool else "keeping events in memory"
            logger.warning(
                "FeedbackHub at %s is not taking events (%s); %s and trying again", self.url, _describe(answer), keeping
            )
        else:
            logger.debug("FeedbackHub at %s still away (%s); next try in %.1fs", self.url, _describe(answer), delay)

    def _end_outage(self) -> None:
        if self._outage_failures:
            logger.warning("FeedbackHub at %s answers again; sending what waited", self.url)
            self._outage_failures = 0
            self._size_wakeups = True


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _restart_in_child(reference: "weakref.ref[FeedbackCollector]") -> None:
    # The parent's thread does not exist in a forked child, and its lock may have been held mid-fork;
    # the parent goes on sending what it queued, so the child starts empty.
    collector = reference()
    if collector is not None and not collector._closed:
        collector._start()


def _iso(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat()


def _prediction_item(fields: tuple, default_model: str | None, task_type: str | None) -> dict[str, Any]:
    (
        created,
        event_id,
        input_data,
        prediction,
        actual,
        version,
        latency,
        confidence,
        model,
        interaction_id,
        attributes,
    ) = fields
    item = {
        "version": UNVERSIONED if version is None else str(version),
        "event_id": event_id,
        "input": input_data,
        "prediction": prediction,
        "actual": actual,
        "latency_ms": _milliseconds(latency),
        "confidence": confidence,
        "timestamp": _iso(created),
        "attributes": attributes,
    }
    return _with_optional(item, model=model or default_model, interaction_id=interaction_id, task_type=task_type)


def _outcome_item(fields: tuple, default_model: str | None, task_type: str | None) -> dict[str, Any]:
    event_id, actual, model = fields
    return _with_optional({"event_id": event_id, "actual": actual}, model=model or default_model)


def _feedback_item(fields: tuple, default_model: str | None, task_type: str | None) -> dict[str, Any]:
    created, event_id, kind, prediction_event_id, interaction_id, value, comment, source, model = fields
    item = {
        "kind": kind,
        "event_id": event_id,
        "value": value,
        "comment": comment,
        "source": source,
        "timestamp": _iso(created),
    }
    return _with_optional(
        item, model=model or default_model, prediction_event_id=prediction_event_id, interaction_id=interaction_id
    )


_BUILDERS = {PREDICTIONS: _prediction_item, OUTCOMES: _outcome_item, FEEDBACK: _feedback_item}


def _with_optional(item: dict[str, Any], **optional: Any) -> dict[str, Any]:
    item.update((name, value) for name, value in optional.items() if value)
    return item


def _milliseconds(latency: Any) -> Any:
    if latency is None:
        return None
    if isinstance(latency, datetime.timedelta):
        return latency.total_seconds() * 1000.0
    try:
        return float(latency) * 1000.0
    except (TypeError, ValueError):
        return latency  # the hub says what is wrong with it


def _jsonable(value: Any) -> Any:
    """What json.dumps calls for values it cannot write itself."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def _dumps(item: dict[str, Any]) -> str:
    try:
        return json.dumps(item, default=_jsonable, allow_nan=False, separators=(",", ":"))
    except ValueError:
        # NaN or an infinity somewhere (maybe inside an array): JSON has no such numbers, null is closest.
        plain = json.loads(json.dumps(item, default=_jsonable))
        return json.dumps(_finite(plain), allow_nan=False, separators=(",", ":"))


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(child) for child in value]
    if isinstance(value, dict):
        return {key: _finite(child) for key, child in value.items()}
    return value


def _by_endpoint(items: list[_Encoded]) -> Iterator[tuple[str, list[_Encoded]]]:
    # Predictions first: the hub refuses outcomes and feedback for a model that no prediction has registered yet.
    groups: dict[str, list[_Encoded]] = {PREDICTIONS: [], OUTCOMES: [], FEEDBACK: []}
    for item in items:
        groups[item.endpoint].append(item)
    yield from ((endpoint, group) for endpoint, group in groups.items() if group)


def _split_by_body_size(items: list[_Encoded]) -> list[list[_Encoded]]:
    groups: list[list[_Encoded]] = [[]]
    size = 2
    for item in items:
        if groups[-1] and size + len(item.payload) + 1 > SERVER_MAX_BODY_BYTES:
            groups.append([])
            size = 2
        groups[-1].append(item)
        size += len(item.payload) + 1
    return groups


def _error_of(text: bytes, error: urllib.error.HTTPError) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The hub's message and field problems from its JSON error body (or whatever else answered)."""
    try:
        details = json.loads(text)["error"]
        fields = tuple((str(f["field"]), str(f["message"])) for f in details.get("fields") or ())
        return str(details.get("message") or error.reason), fields
    except (ValueError, TypeError, KeyError, AttributeError):
        return f"{error.reason}: {text[:200].decode('utf-8', 'replace')}".rstrip(": "), ()


def _refused_positions(answer: _Answer, size: int) -> set[int]:
    """The batch positions a refusal names; all of them when it names the batch as a whole."""
    positions = set()
    for field, _ in answer.fields:
        match = _ITEM_FIELD.match(field)
        if match is None or int(match.group(1)) >= size:
            return set(range(size))
        positions.add(int(match.group(1)))
    return positions or set(range(size))


def _reasons_by_position(fields: Sequence[tuple[str, str]]) -> dict[int, str]:
    reasons: dict[int, list[str]] = {}
    for field, message in fields:
        match = _ITEM_FIELD.match(field)
        if match:
            name = field[match.end() :] or "item"
            reasons.setdefault(int(match.group(1)), []).append(f"{name}: {message}")
    return {position: "; ".join(messages) for position, messages in reasons.items()}


def _label(item: _Encoded) -> str:
    if item.spool_id is None:
        return item.label
    try:
        return str(json.loads(item.payload).get("event_id") or item.label)
    except (ValueError, AttributeError):
        return item.label


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        seconds = (when - datetime.datetime.now(datetime.UTC)).total_seconds()
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def _describe(answer: _Answer) -> str:
    return answer.problem if answer.status is None else f"HTTP {answer.status}: {answer.problem}"
