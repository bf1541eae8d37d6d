"""Helpers of the fault tests: a gunicorn process of the hub on its own, and a TCP proxy that can be cut."""

import contextlib
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.test_stack import PYTHON, REPO_DIR, START_TIMEOUT, RunningStack, child_env, free_port


def gunicorn_start(var_dir: Path, log_path: Path, *options: str, **env: str) -> RunningStack:
    """gunicorn serving the hub with the given environment, one worker unless `options` (gunicorn's command line
    options, after the defaults) say otherwise; returns once it answers."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [PYTHON, "-m", "gunicorn", "feedbackhub.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--timeout", "120", *options],
            cwd=REPO_DIR, env=child_env(var_dir, port, **env), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = RunningStack(process=process, log_path=log_path, port=port)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"gunicorn exited:\n{server.log()}"
        try:  # a 404 of the API: answered by the app without touching the database
            urllib.request.urlopen(f"{server.base_url}/api/v1/", timeout=30).close()  # noqa: S310 - loopback
            return server
        except urllib.error.HTTPError:
            return server
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    server.stop(signal.SIGKILL)
    raise AssertionError(f"gunicorn did not answer within {START_TIMEOUT} s:\n{server.log()}")


@dataclass
class TcpProxy:
    """Forwards 127.0.0.1:port to a target; cut() closes the listener and every open connection, as a database
    host that went away; resume() listens on the same port again."""

    target: tuple[str, int]
    port: int = 0
    _listener: socket.socket | None = None
    _open: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def resume(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            sockets, self._open = [self._listener, *self._open], []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                return
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
