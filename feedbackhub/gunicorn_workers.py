"""gunicorn's threaded worker, with new connections going to the worker process that holds the fewest.

All workers wait on the one listening socket, and whichever wakes first accepts. A kept-alive connection then stays
with that process for as long as the client keeps it, so clients that hold a few connections open (a service logging
each prediction, the Python client's batches) could all end up on one process while the others idle: on two cores
that halved what two workers served in half of the benchmark's runs. Here each worker publishes how many connections
it holds on a board in shared memory, set up by the master before it forks; a worker that holds more than a live
sibling with a free thread leaves a new connection to its siblings for a moment (`SIBLING_HEAD_START`), so that the
sibling, woken by the same connection, takes it first. A worker never refuses a connection: if no sibling takes it
within that moment, it accepts it, so a wrong or stale count costs at most that wait.

Connections a worker took while its sibling could not (still loading the project when clients connected, or just
restarted after exiting) would stay with it for as long as their clients keep them. So a worker also hands kept-alive
connections back: while it holds more than a live sibling with a free thread would after taking one, it answers with
`Connection: close` (gunicorn's own way of ending a kept-alive connection), and the client's next connection goes
to the sibling as above. The answer itself is whole; the client opens a new connection for its next request.

A thread that has answered on a kept-alive connection waits a moment (`NEXT_REQUEST_WAIT`) for the client's next
request on it, and reads it at once if it comes, instead of handing the connection back to the worker's main loop,
which would poll it, take it out of the poll and pass it to the thread pool again for that next request: a client
that sends its requests one after another then costs the worker about a fifth less of gunicorn's own work a
request. Only while the worker holds no more connections than threads, so that no other connection can be kept
waiting for a thread meanwhile (but a new one, by at most that moment).
"""

import select
import time
from multiprocessing.sharedctypes import RawArray, RawValue
from typing import Any

from gunicorn.workers.gthread import ThreadWorker

# Seconds a worker holding more connections leaves a new one to a sibling with a free thread: an idle sibling takes it
# well within this on a quiet machine. Longer waits hold up the worker's other connections when both are busy: with a
# new connection a request (clients that do not keep connections alive), 10 ms cost 40-60% of the single events.
SIBLING_HEAD_START = 0.002
_CHECK_EVERY = 0.0002
# Seconds a thread that answered on a kept-alive connection waits for the next request on it. On the benchmark's 2
# cores, single predictions sent one after another on 8 connections (PostgreSQL, runs alternating with the worker
# without the wait): 6-8% less CPU a request in the workers, 4-5% more requests served; 10 ms did no better.
NEXT_REQUEST_WAIT = 0.002
_SLOTS = 64
# A worker's main loop comes round at least once a second (its poll times out); a slot not written for longer than
# this belongs to a worker that has exited.
_STALE_SECONDS = 5.0


class _ConnectionBoard:
    """Connections held by each worker process, in memory the master's children share: one slot a worker."""

    def __init__(self, slots: int) -> None:
        self._connections = RawArray("l", slots)
        self._written_at = RawArray("d", slots)
        # One more than the highest slot ever given to a worker: the slots a look at the board reads (it is read on
        # every request). Raised by the master alone, before it forks the slot's worker.
        self._slots_given = RawValue("l", 0)

    def give(self, slot: int) -> None:
        self._slots_given.value = max(self._slots_given.value, slot + 1)

    def publish(self, slot: int, connections: int) -> None:
        self._connections[slot] = connections
        self._written_at[slot] = time.monotonic()

    def clear(self, slot: int) -> None:
        self._written_at[slot] = 0.0

    def sibling_holds_fewer(self, slot: int, connections: int, threads: int) -> bool:
        """Whether a live sibling holds fewer connections than `connections` and than its `threads`."""
        fewer = min(connections, threads)
        if fewer <= 0:
            return False
        live_after = time.monotonic() - _STALE_SECONDS
        written_at = self._written_at
        held = self._connections
        for other in range(self._slots_given.value):
            if other != slot and held[other] < fewer and written_at[other] > live_after:
                return True
        return False


# Created when gunicorn's master loads the worker class, before it forks the workers, who inherit the same memory.
_board = _ConnectionBoard(_SLOTS)
# The slots of the master's live workers: kept by the master, which makes each worker object before it forks it
# (`__init__` below) and is told of each exit (`worker_exited`, from gunicorn_conf's child_exit).
_slots_taken: set[int] = set()


def _free_slot(age: int) -> int:
    free = [slot for slot in range(_SLOTS) if slot not in _slots_taken]
    return free[0] if free else age % _SLOTS  # more live workers than slots: some share one, and see less


class BalancedThreadWorker(ThreadWorker):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.slot = _free_slot(self.age)
        _slots_taken.add(self.slot)
        _board.give(self.slot)

    # gunicorn's threaded worker closes a connection after its answer when it keeps `max_keepalived` or more alive
    # already (gthread.ThreadWorker.handle_request, for each request): none while a sibling should hold it instead.
    @property
    def max_keepalived(self) -> int:
        if _board.sibling_holds_fewer(self.slot, self.nr_conns - 1, self.cfg.threads):
            return 0
        return self._max_keepalived

    @max_keepalived.setter
    def max_keepalived(self, value: int) -> None:
        self._max_keepalived = value

    # The count is published whenever it changes: on accept, when a request's thread finishes with a connection it
    # closes, when idle kept-alive connections time out; and on every turn of the main loop.
    def notify(self) -> None:
        super().notify()
        self._publish()

    def finish_request(self, fs: Any) -> None:
        super().finish_request(fs)
        self._publish()

    def murder_keepalived(self) -> None:
        super().murder_keepalived()
        self._publish()

    def handle_exit(self, sig: int, frame: Any) -> None:
        """A graceful stop (SIGTERM): the worker accepts no more connections, so its siblings stop leaving new ones,
        or handing kept-alive ones back, to it while it drains the requests in flight."""
        super().handle_exit(sig, frame)
        _board.clear(self.slot)

    def _publish(self) -> None:
        # A worker that stops (signalled, or after its max_requests) takes no new connection: it stays off the board.
        if self.alive:
            _board.publish(self.slot, self.nr_conns)
        else:
            _board.clear(self.slot)

    def handle(self, conn: Any) -> tuple[bool, Any]:
        while True:
            keepalive, conn = super().handle(conn)
            if not (
                keepalive
                and self.alive
                and self.nr_conns <= self.cfg.threads
                and _readable_within(conn.sock, NEXT_REQUEST_WAIT)
            ):
                return keepalive, conn

    def accept(self, server: Any, listener: Any) -> None:
        if _board.sibling_holds_fewer(self.slot, self.nr_conns, self.cfg.threads) and _taken_meanwhile(
            listener, SIBLING_HEAD_START
        ):
            return
        super().accept(server, listener)  # if a sibling took it just now, this finds nothing to accept
        self._publish()


def worker_exited(worker: Any) -> None:
    """In the master, once a worker has exited: its slot no longer counts (its last count was that of a worker
    draining its connections, which would hold back its siblings' accepts) and is free for the next worker."""
    slot = getattr(worker, "slot", None)
    if slot is not None:
        _board.clear(slot)
        _slots_taken.discard(slot)


def _readable_within(sock: Any, seconds: float) -> bool:
    waiting = select.poll()
    waiting.register(sock, select.POLLIN)
    return bool(waiting.poll(seconds * 1000))


def _taken_meanwhile(listener: Any, seconds: float) -> bool:
    """Whether the listening socket's waiting connections are all taken (by other processes) within `seconds`."""
    waiting = select.poll()
    waiting.register(listener, select.POLLIN)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(_CHECK_EVERY)
        if not waiting.poll(0):
            return True
    return False
