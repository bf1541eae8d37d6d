"""`make run` end to end: real gunicorn and Celery processes against a throwaway var dir and SQLite database."""

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.core.management import CommandError, call_command
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.test_prometheus_files import prometheus_binary
from tests.deploy.test_prometheus_files import query as prometheus_query

pytestmark = [pytest.mark.slow]

if not Path("/proc/self/stat").exists():
    pytest.skip("these tests find child processes through /proc", allow_module_level=True)

REPO_DIR = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
# Settings the runner's environment may carry that would move the stack off its throwaway SQLite setup.
ENV_TO_DROP = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "ALLOWED_HOSTS",
    "FEEDBACKHUB_HTTPS",
    "FEEDBACKHUB_METRICS_TOKEN",
    "DEBUG",
    "DJANGO_SUPERUSER_USERNAME",
    "DJANGO_SUPERUSER_PASSWORD",
)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
CREATED_LINE = re.compile(r"Admin account created: admin / (\S+)  \(shown once: change it in the admin\)")


def child_env(var_dir: Path, port: int = 0, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in ENV_TO_DROP}
    env.update(FEEDBACKHUB_VAR_DIR=str(var_dir), PORT=str(port), WEB_CONCURRENCY="2", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def manage(var_dir: Path, *args: str) -> str:
    return manage_concurrently(var_dir, list(args))[0]


def manage_concurrently(var_dir: Path, *commands: list[str]) -> list[str]:
    """Run manage.py commands side by side; return the stdout of each, failing on any non-zero exit."""
    running = [
        subprocess.Popen(
            [PYTHON, "manage.py", *command],
            cwd=REPO_DIR,
            env=child_env(var_dir),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for command in commands
    ]
    outputs = []
    for command, process in zip(commands, running, strict=True):
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, f"manage.py {' '.join(command)} failed:\n{stdout}\n{stderr}"
        outputs.append(stdout)
    return outputs


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- processes, seen through /proc (psutil is not a dependency) ---


def all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def state_and_parent(pid: int) -> tuple[str, int] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may hold spaces; the fixed fields start after the last ")".
    state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
    return state, int(ppid)


def is_running(pid: int) -> bool:
    info = state_and_parent(pid)
    return info is not None and info[0] != "Z"


def descendants(root: int) -> set[int]:
    children_of: dict[int, list[int]] = {}
    for pid in all_pids():
        info = state_and_parent(pid)
        if info:
            children_of.setdefault(info[1], []).append(pid)
    found: set[int] = set()
    pending = [root]
    while pending:
        for child in children_of.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def processes_started_for(var_dir: Path) -> set[int]:
    """Running processes whose environment points at var_dir: everything the stack and manage.py started."""
    marker = f"FEEDBACKHUB_VAR_DIR={var_dir}".encode()
    found = set()
    for pid in all_pids():
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0") and is_running(pid):
            found.add(pid)
    return found


def kill_everything_started_for(var_dir: Path) -> None:
    """Teardown after a failed test: no stray gunicorn or celery may outlive the test run."""
    for pid in processes_started_for(var_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_until_gone(pids: set[int], timeout: float = 5.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while True:
        left = {pid for pid in pids if is_running(pid)}
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


# --- the running stack ---


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail(f"no {pattern!r} in the stack's output (exit code {self.process.poll()}):\n{self.log()}")

    def stop(self, signum: signal.Signals) -> int:
        self.process.send_signal(signum)
        return self.process.wait(timeout=STOP_TIMEOUT)


StartStack = Callable[..., RunningStack]  # keyword arguments: extra environment variables


@pytest.fixture(scope="module")
def var_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("var")
    manage_concurrently(path, ["migrate", "--noinput"], ["collectstatic", "--noinput", "-v0"])
    yield path
    kill_everything_started_for(path)


@pytest.fixture
def start_stack(var_dir: Path, tmp_path: Path) -> Iterator[StartStack]:
    started: list[RunningStack] = []

    def start(**env: str) -> RunningStack:
        port = free_port()
        log_path = tmp_path / f"stack-{len(started)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [PYTHON, "-m", "feedbackhub.stack"],
                cwd=REPO_DIR,
                env=child_env(var_dir, port, **env),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(RunningStack(process=process, log_path=log_path, port=port))
        return started[-1]

    yield start
    kill_everything_started_for(var_dir)
    for stack in started:
        stack.process.wait(timeout=STOP_TIMEOUT)


def http_get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - http URLs built here
            return response.status, response.headers.get_content_type(), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type(), error.read().decode(errors="replace")


def assert_static_asset_loads(base_url: str, html: str, path_pattern: str) -> None:
    match = re.search(rf'(?:href|src)="({path_pattern})"', html)
    assert match, f"no {path_pattern} in:\n{html}"
    status, _, _ = http_get(base_url + match.group(1))
    assert status == 200, match.group(1)


def assert_site_serves(base_url: str) -> None:
    status, content_type, login_page = http_get(f"{base_url}/admin/login/")
    assert (status, content_type) == (200, "text/html")
    # The manifest storage serves hashed names: this proves collectstatic ran and whitenoise finds its output.
    assert_static_asset_loads(base_url, login_page, r"/static/admin/css/base\.[0-9a-f]{12}\.css")

    status, content_type, docs_page = http_get(f"{base_url}/api/docs/")
    assert (status, content_type) == (200, "text/html")
    assert_static_asset_loads(base_url, docs_page, r"/static/drf_spectacular_sidecar/[^\"]+\.js")

    status, _, schema = http_get(f"{base_url}/api/schema/")
    assert status == 200
    assert str(yaml.safe_load(schema)["openapi"]).startswith("3")

    status, _, metrics = http_get(f"{base_url}/metrics")
    assert status == 200
    assert "django_http_requests_total_by_method_total" in metrics


# --- ensure_admin ---


def users_in(var_dir: Path) -> list[tuple[str, bool, str]]:
    """(username, is_superuser, password hash) of every user in the stack's own SQLite database."""
    with sqlite3.connect(var_dir / "db.sqlite3") as connection:
        return connection.execute("SELECT username, is_superuser, password FROM auth_user").fetchall()


def test_ensure_admin_creates_one_superuser_and_shows_its_password_once(var_dir: Path) -> None:
    first = manage(var_dir, "ensure_admin")
    second = manage(var_dir, "ensure_admin")

    created = CREATED_LINE.fullmatch(first.strip())
    assert created, first
    password = created.group(1)
    assert len(password) >= 16
    assert second.strip() == "Admin account exists (admin); reset it with: python manage.py changepassword admin"
    [(username, is_superuser, password_hash)] = users_in(var_dir)
    assert (username, is_superuser) == ("admin", True)
    assert check_password(password, password_hash)


@pytest.mark.django_db
def test_ensure_admin_takes_the_password_from_the_environment_without_printing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-chosen-password-1")
    out = StringIO()

    call_command("ensure_admin", "--username", "root", stdout=out)

    assert out.getvalue().strip() == "Admin account created: root (password from DJANGO_SUPERUSER_PASSWORD)"
    assert get_user_model().objects.get(is_superuser=True).check_password("a-chosen-password-1")


@pytest.mark.django_db
def test_ensure_admin_refuses_to_take_over_an_ordinary_user() -> None:
    get_user_model().objects.create_user("admin", password="unused-password")

    with pytest.raises(CommandError, match="exists but is not a superuser"):
        call_command("ensure_admin", stdout=StringIO())

    assert not get_user_model().objects.filter(is_superuser=True).exists()


# --- the stack ---


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_the_stack_serves_everything_then_stops_every_process(
    start_stack: StartStack, var_dir: Path, stop_signal: signal.Signals
) -> None:
    stack = start_stack()
    stack.wait_for_log(r"Press Ctrl-C to stop\.")
    for path in ("/", "/admin/", "/api/docs/", "/api/schema/", "/metrics"):
        assert f"{stack.base_url}{path}\n" in stack.log()
    assert_site_serves(stack.base_url)
    stack.wait_for_log(r"celery@\S+ ready\.")
    # gunicorn master and 2 workers; celery worker, its pool process and beat.
    started = descendants(stack.process.pid)
    assert len(started) >= 6, stack.log()

    assert stack.stop(stop_signal) == 0, stack.log()

    assert wait_until_gone(started) == set(), stack.log()
    assert processes_started_for(var_dir) == set()
    log = stack.log()
    assert "Traceback" not in log, log
    assert "was sent SIGTERM" not in log  # gunicorn's complaint when its workers are signalled behind its back


def test_the_stack_stops_everything_and_says_so_when_a_process_dies(start_stack: StartStack, var_dir: Path) -> None:
    stack = start_stack()
    stack.wait_for_log(r"Press Ctrl-C to stop\.")
    celery_pid = int(stack.wait_for_log(r"Started celery worker \(pid (\d+)\)").group(1))
    stack.wait_for_log(r"celery@\S+ ready\.")
    started = descendants(stack.process.pid)

    # Killed outright, the celery worker leaves its pool process and beat behind for the stack to clean up.
    os.kill(celery_pid, signal.SIGKILL)

    assert stack.process.wait(timeout=STOP_TIMEOUT) == 1
    assert f"celery worker (pid {celery_pid}) was killed by SIGKILL; check the celery lines above" in stack.log()
    assert wait_until_gone(started) == set(), stack.log()
    assert processes_started_for(var_dir) == set()


def test_the_stack_refuses_a_port_in_use_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = subprocess.run(
            [PYTHON, "-m", "feedbackhub.stack"],
            cwd=REPO_DIR,
            env=child_env(tmp_path, port),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    assert result.returncode == 1
    assert f"port {port} is in use: stop the other process or run `PORT={port + 1} make run`" in result.stderr
    assert "Started" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "eighty", "PORT must be a whole number, got 'eighty'"),
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY must be at least 1, got 0"),
    ],
)
def test_the_stack_explains_a_bad_setting_in_one_line(tmp_path: Path, name: str, value: str, message: str) -> None:
    env = child_env(tmp_path, free_port(), **{name: value})

    result = subprocess.run(
        [PYTHON, "-m", "feedbackhub.stack"],
        cwd=REPO_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr == f"FeedbackHub cannot start: {message}\n"


def scraped_value(metrics: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_every_web_worker_reports_the_same_quality_and_request_counts_add_up(
    start_stack: StartStack, var_dir: Path
) -> None:
    key = manage(var_dir, "create_api_key", "e2e").strip().splitlines()[-1]
    stack = start_stack()
    stack.wait_for_log(r"Press Ctrl-C to stop\.")
    batch = [
        {"model": "e2e", "version": "v1", "input": n, "prediction": n % 2, "actual": int(n % 3 == 0)} for n in range(30)
    ]
    request = urllib.request.Request(  # noqa: S310 - loopback
        f"{stack.base_url}/api/v1/predictions/",
        data=json.dumps(batch).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        assert response.status == 201

    scrapes = [http_get(f"{stack.base_url}/metrics")[2] for _ in range(20)]

    accuracies = {scraped_value(text, "model_accuracy", model="e2e", version="v1") for text in scrapes}
    assert accuracies == {sum(n % 2 == int(n % 3 == 0) for n in range(30)) / 30}
    gets = [scraped_value(text, "django_http_requests_total_by_method_total", method="GET") for text in scrapes]
    assert gets == sorted(gets) and len(set(gets)) == 20, gets  # summed over both workers, never going back
    assert prometheus_reads(f"127.0.0.1:{stack.port}", 'model_accuracy{model="e2e", version="v1"}') == accuracies.pop()
    stack.stop(signal.SIGINT)


def prometheus_reads(target: str, promql: str) -> float:
    """The value a real Prometheus server (Debian's package) reads for `promql` after scraping `target`."""
    prometheus = prometheus_binary()
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s}\n"
            f"scrape_configs: [{{job_name: feedbackhub, static_configs: [{{targets: ['{target}']}}]}}]\n"
        )
        port = free_port()
        server = subprocess.Popen(  # noqa: S603 - our own arguments
            [prometheus, f"--config.file={config}", f"--storage.tsdb.path={directory}/tsdb",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                time.sleep(1)
                with contextlib.suppress(OSError):
                    result = prometheus_query(port, promql)
                    if result:
                        return float(result[0]["value"][1])
            pytest.fail(f"Prometheus never read {promql} from {target}")
        finally:
            server.terminate()
            server.wait(timeout=30)
