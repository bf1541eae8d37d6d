"""The threaded web worker leaves a new connection to a live sibling process that holds fewer: the board they share,
and real gunicorn workers with kept-alive connections. And a thread that answered on a kept-alive connection reads the
client's next request itself when it comes at once: a worker made in process, on a real loopback connection."""

import http.client
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from feedbackhub import gunicorn_workers
from feedbackhub.gunicorn_workers import _STALE_SECONDS, _ConnectionBoard


def test_a_worker_defers_only_to_a_live_sibling_holding_fewer_connections_with_a_free_thread() -> None:
    board = _ConnectionBoard(4)
    board.give(0)
    board.give(1)
    board.publish(0, 3)
    board.publish(1, 3)

    assert not board.sibling_holds_fewer(0, 3, threads=4)  # as many: no one waits
    board.publish(1, 2)
    assert board.sibling_holds_fewer(0, 3, threads=4)
    assert not board.sibling_holds_fewer(1, 2, threads=4)  # its own slot is not a sibling
    # Every thread of both busy (clients that open a connection a request): each takes what it is woken for.
    board.publish(0, 9)
    board.publish(1, 6)
    assert not board.sibling_holds_fewer(0, 9, threads=4)


def test_a_slot_not_written_lately_belongs_to_a_worker_that_exited() -> None:
    board = _ConnectionBoard(4)
    board.give(2)
    board.publish(0, 5)
    board.publish(2, 0)
    board._written_at[2] = time.monotonic() - _STALE_SECONDS - 1

    assert not board.sibling_holds_fewer(0, 5, threads=4)


def test_an_exited_workers_slot_stops_counting_and_goes_to_the_next_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gunicorn_workers, "_board", _ConnectionBoard(4))
    monkeypatch.setattr(gunicorn_workers, "_slots_taken", {0, 1})
    gunicorn_workers._board.give(1)
    gunicorn_workers._board.publish(0, 2)
    gunicorn_workers._board.publish(1, 0)  # a worker draining its last connections before it exits
    assert gunicorn_workers._board.sibling_holds_fewer(0, 2, threads=4)

    gunicorn_workers.worker_exited(SimpleNamespace(slot=1))  # the master, told by child_exit

    assert not gunicorn_workers._board.sibling_holds_fewer(0, 2, threads=4)
    assert gunicorn_workers._free_slot(age=7) == 1


def worker_pids(master_pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master_pid:
                children.append(int(entry.name))
    return children


def serving_worker(connection: http.client.HTTPConnection, server_port: int, workers: list[int]) -> int | None:
    """The worker process holding the server's end of a connection: found by the socket's inode in /proc."""
    client_port = connection.sock.getsockname()[1]
    sockets = {
        f"socket:[{fields[9]}]"
        for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
        if int(fields[1].split(":")[1], 16) == server_port and int(fields[2].split(":")[1], 16) == client_port
    }
    for pid in workers:
        for descriptor in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if os.readlink(descriptor) in sockets:
                    return pid
            except OSError:
                continue
    return None


def answered_connection(port: int) -> tuple[http.client.HTTPConnection, bool]:
    """A new connection after one request, and whether the server kept it alive."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/api/v1/")  # a 404 of the API, answered without the database
    response = connection.getresponse()
    response.read()
    return connection, response.getheader("Connection", "").lower() != "close"


def kept_alive_connection(port: int) -> http.client.HTTPConnection:
    connection, kept = answered_connection(port)
    assert kept
    return connection


@dataclass
class Balanced:
    port: int
    workers: list[int]

    def owner(self, connection: http.client.HTTPConnection) -> int | None:
        return serving_worker(connection, self.port, self.workers)


@pytest.fixture
def balanced(tmp_path: Path) -> Iterator[Balanced]:
    """gunicorn as `make run` starts it, 2 threaded workers, both serving, holding no connection."""
    if not Path("/proc/net/tcp").exists():
        pytest.skip("reads which process holds a socket from /proc")
    from tests.e2e.gunicorn_proxy import gunicorn_start

    server = gunicorn_start(
        tmp_path / "var", tmp_path / "gunicorn.log", "--workers", "2", "--config", "python:feedbackhub.gunicorn_conf",
        "--keep-alive", "60", WEB_THREADS="4",
    )  # fmt: skip
    try:
        hub = Balanced(server.port, worker_pids(server.process.pid))
        assert len(hub.workers) == 2
        # Both workers serving (each loads the project when it boots): warm-up connections until each holds one.
        warm_up, deadline = [], time.monotonic() + 60
        while {hub.owner(c) for c in warm_up} != set(hub.workers):
            assert time.monotonic() < deadline, server.log()
            connection, kept = answered_connection(server.port)
            if kept:
                warm_up.append(connection)
            else:  # two in a row went to the same worker, which handed the second back to balance them
                connection.close()
        for connection in warm_up:
            connection.close()
        time.sleep(0.5)
        yield hub
    finally:
        server.stop(signal.SIGTERM)


@pytest.mark.slow
def test_kept_alive_connections_are_spread_over_the_threaded_workers(balanced: Balanced) -> None:
    held = []
    for _ in range(8):
        held.append(kept_alive_connection(balanced.port))
        time.sleep(0.05)
    owners = [balanced.owner(c) for c in held]

    assert sorted(owners.count(pid) for pid in balanced.workers) == [4, 4], owners
    for connection in held:
        connection.close()


@pytest.mark.slow
def test_a_connection_closed_a_moment_ago_no_longer_counts(balanced: Balanced) -> None:
    first, second = kept_alive_connection(balanced.port), kept_alive_connection(balanced.port)
    assert {balanced.owner(first), balanced.owner(second)} == set(balanced.workers)
    for _ in range(3):
        freed = balanced.owner(second)
        second.close()
        time.sleep(0.1)  # well within the second a worker's main loop may wait before it comes round

        second = kept_alive_connection(balanced.port)

        assert balanced.owner(second) == freed
    first.close()
    second.close()


def request_again(connection: http.client.HTTPConnection, port: int) -> tuple[http.client.HTTPConnection, bool]:
    """One more request on a kept-alive connection, as a client's pool sends it: the connection to use next (a new
    one when the answer said `Connection: close`) and whether it was closed."""
    connection.request("GET", "/api/v1/")
    response = connection.getresponse()
    response.read()
    if response.getheader("Connection", "").lower() == "close":
        connection.close()
        return kept_alive_connection(port), True
    return connection, False


@pytest.mark.slow
def test_connections_a_worker_took_while_its_sibling_could_not_are_handed_back(balanced: Balanced) -> None:
    # A sibling that cannot accept (stopped here; in production, one loading the project after a restart) while a
    # client opens its pool: each connection waits the head start, then goes to the worker that can take it.
    sibling = balanced.workers[1]
    os.kill(sibling, signal.SIGSTOP)
    held = []
    try:
        for _ in range(8):
            held.append(http.client.HTTPConnection("127.0.0.1", balanced.port, timeout=30))
            held[-1].connect()
            time.sleep(0.01)
    finally:
        os.kill(sibling, signal.SIGCONT)
    assert {balanced.owner(c) for c in held} == {balanced.workers[0]}
    time.sleep(0.1)

    closed = 0
    for _ in range(2):
        for index, connection in enumerate(held):
            held[index], was_closed = request_again(connection, balanced.port)
            closed += was_closed
    owners = [balanced.owner(c) for c in held]

    assert sorted(owners.count(pid) for pid in balanced.workers) == [4, 4], owners
    assert 4 <= closed <= 6  # one for each connection handed over, a couple more at most where a count lags
    for _ in range(3):  # balanced: no connection is closed any more
        for index, connection in enumerate(held):
            held[index], was_closed = request_again(connection, balanced.port)
            assert not was_closed
    for connection in held:
        connection.close()


def test_a_worker_that_stops_leaves_the_board_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from gunicorn.config import Config

    monkeypatch.setattr(gunicorn_workers, "_board", _ConnectionBoard(4))
    monkeypatch.setattr(gunicorn_workers, "_slots_taken", set())
    cfg = Config()
    cfg.set("threads", 4)
    stopping = gunicorn_workers.BalancedThreadWorker(1, os.getpid(), [], None, 30, cfg, None)
    other = gunicorn_workers.BalancedThreadWorker(2, os.getpid(), [], None, 30, cfg, None)
    gunicorn_workers._board.publish(other.slot, 3)
    stopping._publish()  # holding no connection: the other worker would leave it new ones
    assert gunicorn_workers._board.sibling_holds_fewer(other.slot, 3, threads=4)

    stopping.handle_exit(signal.SIGTERM, None)  # gunicorn's graceful stop: it drains what it holds, accepts nothing

    assert not gunicorn_workers._board.sibling_holds_fewer(other.slot, 3, threads=4)
    stopping._publish()  # a request it was still serving ends
    assert not gunicorn_workers._board.sibling_holds_fewer(other.slot, 3, threads=4)
    stopping.tmp.close()
    other.tmp.close()


class _CountingApp:
    """A WSGI app that answers 200 and counts the requests it answered."""

    def __init__(self) -> None:
        self.answered = 0

    def __call__(self, environ: dict, start_response: Any) -> list[bytes]:
        self.answered += 1
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]


@dataclass
class _ServedConnection:
    worker: gunicorn_workers.BalancedThreadWorker
    app: _CountingApp
    client: socket.socket
    conn: Any


@pytest.fixture
def served_connection(monkeypatch: pytest.MonkeyPatch) -> Iterator[_ServedConnection]:
    """A threaded worker made in process (no fork), serving a counting app, and a TCP connection on loopback whose
    server end the worker's `handle` reads, as a thread of its pool would after the main loop polled it."""
    from gunicorn.config import Config
    from gunicorn.glogging import Logger
    from gunicorn.workers.gthread import TConn

    monkeypatch.setattr(gunicorn_workers, "_board", _ConnectionBoard(4))
    monkeypatch.setattr(gunicorn_workers, "_slots_taken", set())
    # Long enough for this test's client thread to read an answer and send again on a busy machine, whatever the GIL.
    monkeypatch.setattr(gunicorn_workers, "NEXT_REQUEST_WAIT", 0.5)
    cfg = Config()
    cfg.set("threads", 4)
    worker = gunicorn_workers.BalancedThreadWorker(1, os.getpid(), [], None, 30, cfg, Logger(cfg))
    app = _CountingApp()
    worker.wsgi = app
    worker.nr_conns = 1
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=10)
        server_end, address = listener.accept()
        conn = TConn(cfg, server_end, address, listener.getsockname())
    conn.init()
    try:
        yield _ServedConnection(worker, app, client, conn)
    finally:
        client.close()
        conn.close()
        worker.tmp.close()


def _request_and_answer(client: socket.socket) -> bytes:
    client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    answer = b""
    while not answer.endswith(b"\r\n\r\nok"):
        chunk = client.recv(4096)
        assert chunk, answer
        answer += chunk
    return answer


def _handled_in_thread(served: _ServedConnection) -> tuple[threading.Thread, list]:
    returned: list = []
    thread = threading.Thread(target=lambda: returned.append(served.worker.handle(served.conn)))
    thread.start()
    return thread, returned


def test_a_thread_reads_the_next_request_on_its_connection_when_it_comes_at_once(
    served_connection: _ServedConnection,
) -> None:
    thread, returned = _handled_in_thread(served_connection)
    for _ in range(3):
        assert b"200 OK" in _request_and_answer(served_connection.client)
    thread.join(timeout=5)

    assert served_connection.app.answered == 3  # all three in one hand-over of the connection to a thread
    assert returned == [(True, served_connection.conn)]  # kept alive: back to the main loop, once the client paused


def test_a_request_that_comes_later_goes_through_the_main_loop(served_connection: _ServedConnection) -> None:
    thread, returned = _handled_in_thread(served_connection)
    _request_and_answer(served_connection.client)
    thread.join(timeout=5)  # the client sends nothing more: the thread waits NEXT_REQUEST_WAIT, then gives up

    assert not thread.is_alive()
    assert returned == [(True, served_connection.conn)]
    assert served_connection.app.answered == 1


def test_a_worker_holding_more_connections_than_threads_hands_each_one_back_at_once(
    served_connection: _ServedConnection,
) -> None:
    served_connection.worker.nr_conns = 5  # four threads: a thread that waited on one could keep another waiting
    thread, returned = _handled_in_thread(served_connection)
    _request_and_answer(served_connection.client)
    served_connection.client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # at once, yet too late
    thread.join(timeout=5)
    time.sleep(0.1)

    assert returned == [(True, served_connection.conn)]
    assert served_connection.app.answered == 1  # the second request waits for the main loop's poll


def test_a_stopping_worker_hands_the_connection_back_after_its_answer(served_connection: _ServedConnection) -> None:
    served_connection.worker.alive = False  # a graceful stop began: answers close their connections
    thread, returned = _handled_in_thread(served_connection)
    answer = _request_and_answer(served_connection.client)
    thread.join(timeout=5)

    assert b"Connection: close" in answer
    assert returned == [(False, served_connection.conn)]
