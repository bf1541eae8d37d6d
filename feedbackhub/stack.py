"""Run the whole FeedbackHub stack in the foreground: gunicorn for the web app and one Celery worker with beat.

`make run` ends here (`python -m feedbackhub.stack`). Ctrl-C or SIGTERM stops every process the stack started;
if one of them dies on its own, the others are stopped too and the exit status is non-zero.
"""

import contextlib
import ctypes
import errno
import http.client
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from django.core.exceptions import ImproperlyConfigured

from feedbackhub.env import env_int

logger = logging.getLogger("feedbackhub.stack")

HOST = "127.0.0.1"
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_CONFIGURATION = 2
READY_TIMEOUT_SECONDS = 60.0
STOP_GRACE_SECONDS = 15.0
POLL_SECONDS = 0.2
# SIGHUP too: the children run in their own sessions, so a closed terminal would not reach them.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class StackConfig:
    port: int
    web_concurrency: int

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"


@dataclass(frozen=True)
class ChildSpec:
    name: str
    command: list[str]
    hint: str


@dataclass
class Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes]

    @property
    def pgid(self) -> int:
        # start_new_session makes each child the leader of its own process group.
        return self.process.pid


class StopRequests:
    """Counts stop signals: the first asks for a graceful stop, a second one for an immediate kill."""

    def __init__(self) -> None:
        self.count = 0
        self.first_signal_name = ""

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        self.first_signal_name = self.first_signal_name or signal.Signals(signum).name

    def install(self) -> None:
        for stop_signal in STOP_SIGNALS:
            signal.signal(stop_signal, self.handle)


def read_config() -> StackConfig:
    port = env_int("PORT", "8000", minimum=1)
    if port > 65535:
        raise ImproperlyConfigured(f"PORT must be at most 65535, got {port}")
    return StackConfig(port=port, web_concurrency=env_int("WEB_CONCURRENCY", "2", minimum=1))


def port_problem(port: int) -> str | None:
    """Why gunicorn could not listen on HOST:port, or None when it can."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # gunicorn sets SO_REUSEADDR too, so connections left in TIME_WAIT by a previous run do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return f"port {port} is in use: stop the other process or run `PORT={port + 1} make run`"
            return f"cannot listen on {HOST}:{port}: {error.strerror}"
    return None


def child_specs(config: StackConfig) -> list[ChildSpec]:
    gunicorn = ChildSpec(
        name="gunicorn",
        command=[
            sys.executable,
            *("-m", "gunicorn", "feedbackhub.wsgi:application"),
            *("--workers", str(config.web_concurrency)),
            *("--bind", f"{HOST}:{config.port}"),
            *("--access-logfile", "-"),
            *("--graceful-timeout", "10"),
            *("--config", "python:feedbackhub.gunicorn_conf"),
        ],
        hint="check the gunicorn lines above (settings errors, a port taken meanwhile, a worker failing to boot)",
    )
    # No --without-mingle/--without-gossip: celery turns both off by itself on the filesystem transport
    # (they need amqp or redis), and they work where it turns them on.
    celery = ChildSpec(
        name="celery worker",
        command=[
            sys.executable,
            *("-m", "celery", "-A", "feedbackhub.celery", "worker", "--beat"),
            *("--loglevel", "INFO", "--concurrency", "1"),
            *("--scheduler", "feedbackhub.beat:DatabaseScheduler"),
        ],
        hint="check the celery lines above (is CELERY_BROKER_URL reachable? did `manage.py migrate` run?)",
    )
    return [gunicorn, celery]


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the stack itself is SIGKILLed, the child still gets a
    # SIGTERM and stops its own workers, instead of being orphaned in a session nobody signals.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def prometheus_multiprocess_dir() -> Path:
    """A fresh directory where every web worker writes its request metrics, so /metrics adds them all up."""
    var_dir = Path(os.environ.get("FEEDBACKHUB_VAR_DIR") or Path(__file__).resolve().parent.parent / "var")
    directory = var_dir / "prometheus-multiproc"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    return directory


def start_child(spec: ChildSpec, env: dict[str, str]) -> Child:
    process = subprocess.Popen(  # noqa: S603 - fixed argv built from sys.executable, no shell
        spec.command,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )
    logger.info("Started %s (pid %d): %s", spec.name, process.pid, " ".join(spec.command))
    return Child(spec=spec, process=process)


def first_dead_child(children: Sequence[Child]) -> Child | None:
    return next((child for child in children if child.process.poll() is not None), None)


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        return f"was killed by {signal.Signals(-returncode).name}"
    return f"exited with code {returncode}"


def web_answers(config: StackConfig) -> bool:
    try:
        with urllib.request.urlopen(f"{config.base_url}/admin/login/", timeout=2):  # noqa: S310 - our own http URL
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP status means gunicorn and Django are serving
    except (OSError, http.client.HTTPException):
        return False


def print_urls(config: StackConfig) -> None:
    base = config.base_url
    lines = [
        "",
        "FeedbackHub is running:",
        f"  App:         {base}/",
        f"  Admin:       {base}/admin/",
        f"  API docs:    {base}/api/docs/",
        f"  API schema:  {base}/api/schema/",
        f"  Metrics:     {base}/metrics",
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)


def report_dead_child(child: Child) -> None:
    returncode = child.process.returncode
    print(
        f"FeedbackHub stopped: {child.spec.name} (pid {child.process.pid}) {describe_exit(returncode)}; "
        f"{child.spec.hint}.",
        file=sys.stderr,
        flush=True,
    )


def signal_group(child: Child, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pgid, signum)


def group_alive(child: Child) -> bool:
    # Reap the leader first: a zombie still counts as a member of its process group.
    child.process.poll()
    try:
        os.killpg(child.pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop_children(children: Sequence[Child], stop_requests: StopRequests) -> None:
    """Stop every child's process group: SIGTERM, up to STOP_GRACE_SECONDS to finish, then SIGKILL.

    The SIGTERM goes to the group leaders first: gunicorn and celery then stop their own workers in order,
    which a signal to the whole group would turn into "worker was sent SIGTERM" errors. Whatever a leader
    leaves behind gets the group-wide SIGTERM as soon as that leader is gone.
    """
    if not children:
        return
    if stop_requests.count:
        logger.info("Received %s", stop_requests.first_signal_name)
    print(f"Stopping FeedbackHub (up to {STOP_GRACE_SECONDS:.0f} s; Ctrl-C again kills at once) ...", flush=True)
    signals_before = stop_requests.count
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    leftovers_signalled: set[int] = set()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    while time.monotonic() < deadline and stop_requests.count == signals_before:
        running = [child for child in children if group_alive(child)]
        if not running:
            break
        for child in running:
            if child.process.returncode is not None and child.pgid not in leftovers_signalled:
                signal_group(child, signal.SIGTERM)
                leftovers_signalled.add(child.pgid)
        time.sleep(POLL_SECONDS / 2)
    for child in children:
        if group_alive(child):
            logger.warning("Killing %s (process group %d): it is still running", child.spec.name, child.pgid)
            signal_group(child, signal.SIGKILL)
    for child in children:
        child.process.wait()


def wait_until_web_answers(config: StackConfig, children: Sequence[Child], stop_requests: StopRequests) -> bool:
    """True once gunicorn serves; False if a stop was requested or a child died first."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if stop_requests.count or first_dead_child(children):
            return False
        if web_answers(config):
            return True
        time.sleep(POLL_SECONDS)
    return False


def supervise(children: Sequence[Child], stop_requests: StopRequests) -> Child | None:
    """Block until a stop is requested (None) or a child exits on its own (that child)."""
    while not stop_requests.count:
        dead = first_dead_child(children)
        if dead:
            return dead
        time.sleep(POLL_SECONDS)
    return None


def start_and_supervise(config: StackConfig, children: list[Child], stop_requests: StopRequests) -> int:
    env = dict(os.environ)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(prometheus_multiprocess_dir()))
    for spec in child_specs(config):
        children.append(start_child(spec, env))
    if wait_until_web_answers(config, children, stop_requests):
        print_urls(config)
        dead = supervise(children, stop_requests)
    elif stop_requests.count:
        return EXIT_OK
    else:
        dead = first_dead_child(children)
        if dead is None:
            print(
                f"FeedbackHub stopped: gunicorn did not answer on {config.base_url}/ within "
                f"{READY_TIMEOUT_SECONDS:.0f} s; check the lines above.",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_FAILURE
    if dead is None:
        return EXIT_OK
    report_dead_child(dead)
    return EXIT_FAILURE


def run(config: StackConfig, stop_requests: StopRequests) -> int:
    children: list[Child] = []
    try:
        return start_and_supervise(config, children, stop_requests)
    finally:
        stop_children(children, stop_requests)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = read_config()
    except ImproperlyConfigured as error:
        print(f"FeedbackHub cannot start: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIGURATION
    problem = port_problem(config.port)
    if problem:
        print(f"FeedbackHub cannot start: {problem}", file=sys.stderr)
        return EXIT_FAILURE
    stop_requests = StopRequests()
    stop_requests.install()
    return run(config, stop_requests)


if __name__ == "__main__":
    sys.exit(main())
