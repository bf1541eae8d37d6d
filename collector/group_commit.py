"""Group commit for single predictions: requests that arrive while another thread of the process is writing are
written together, in one transaction, by the next thread to write.

A single prediction's transaction costs far more than the row it adds: the database's write lock (SQLite has one
writer), the reads of what the events already left, the counters' upserts, the commit's fsync, and on PostgreSQL its
round trip (a pipeline: `services._new_predictions_pipelined`). Under load, with several threads a process
(gunicorn's gthread workers), requests queue for that transaction anyway; here the first one in line writes everything
queued by then as one batch (`services.prediction_record_batch`) and hands each request its own result. Nothing is
answered before its commit, so a 201 still means stored; a request alone is written alone, as before.

A batch is all or nothing, so when it fails for any reason (one event conflicting with a stored one, a model the key
may not write, the database), its requests are written again one by one: each then gets the answer, or the error,
it would have had on its own.
"""

import threading
from collections import defaultdict
from dataclasses import dataclass

from collector import services
from collector.services import Actor, PredictionIn, Recorded


@dataclass
class _Waiting:
    item: PredictionIn
    actor: Actor
    parsed_storable: bool
    outcome: Recorded | BaseException | None = None


class _PredictionGroups:
    def __init__(self) -> None:
        self._queue: list[_Waiting] = []
        self._queue_lock = threading.Lock()
        self._writer = threading.Lock()

    def record(self, item: PredictionIn, actor: Actor, parsed_storable: bool) -> Recorded:
        waiting = _Waiting(item, actor, parsed_storable)
        with self._queue_lock:
            self._queue.append(waiting)
        with self._writer:
            if waiting.outcome is None:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                try:
                    _write_group(group)
                except BaseException as error:
                    # A shutdown or a bug: no request that was handed to this writer may wait for an answer.
                    for taken in group:
                        if taken.outcome is None:
                            taken.outcome = error
                    raise
        if isinstance(waiting.outcome, BaseException):
            raise waiting.outcome
        assert waiting.outcome is not None  # noqa: S101 - set by whichever thread wrote the group
        return waiting.outcome


def _write_group(group: list[_Waiting]) -> None:
    by_writer: dict[tuple[Actor, bool], list[_Waiting]] = defaultdict(list)
    for waiting in group:
        by_writer[(waiting.actor, waiting.parsed_storable)].append(waiting)
    for (actor, parsed_storable), same in by_writer.items():
        if len(same) == 1 or not _write_together(same, actor, parsed_storable):
            for waiting in same:
                _write_alone(waiting)


def _write_together(same: list[_Waiting], actor: Actor, parsed_storable: bool) -> bool:
    """Whether the batch was stored; if not, nothing of it was, and each request is to be written alone."""
    try:
        recorded = services.prediction_record_batch(
            items=[waiting.item for waiting in same], actor=actor, parsed_storable=parsed_storable
        )
    except services.ApiKeyNotConfirmed as error:  # the key of every request of the batch: none is written alone
        for waiting in same:
            waiting.outcome = error
        return True
    except Exception:  # noqa: BLE001 - written again one by one, where each request meets its own error
        return False
    for waiting, result in zip(same, recorded, strict=True):
        waiting.outcome = result
    return True


def _write_alone(waiting: _Waiting) -> None:
    try:
        waiting.outcome = services.prediction_record(
            item=waiting.item, actor=waiting.actor, parsed_storable=waiting.parsed_storable
        )
    except Exception as error:  # noqa: BLE001 - handed to the request's own thread, which raises it
        waiting.outcome = error


_groups = _PredictionGroups()


def prediction_record_grouped(*, item: PredictionIn, actor: Actor, parsed_storable: bool = False) -> Recorded:
    """`services.prediction_record`, written together with the single predictions other threads of this process
    are sending at the same time."""
    return _groups.record(item, actor, parsed_storable)
