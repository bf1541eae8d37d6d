"""Instructions the web process spends on one single-prediction request, counted by valgrind's callgrind.

Run with `.venv/bin/python tests/benchmarks/instructions.py` (about three minutes; not part of `make bench`, which
reports rates beside baselines). A count of instructions does not move with whatever else the machine runs, so it
tells a change of a few percent in the request path apart, where rates on a shared machine cannot; it sees only the
web process's user-space work (not the database's, nor the kernel's). The request goes through the WSGI app in
process, as gunicorn would call it, on a throwaway PostgreSQL database (`bench_instructions_<pid>`; SQLite with
`--sqlite`). Each count is the difference between two runs of REQUESTS_SHORT and REQUESTS_LONG requests, divided by
the difference, so that start-up and migrations cancel out.
"""

import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import event, hub_env, manage, progress  # noqa: E402

REQUESTS_SHORT = 60
REQUESTS_LONG = 260
_CHILD = "FEEDBACKHUB_INSTRUCTIONS_REQUESTS"


def send_requests(count: int, key: str) -> None:
    """In a child process under callgrind: `count` single predictions through the WSGI app."""
    from feedbackhub.wsgi import application

    run = os.environ.get("FEEDBACKHUB_INSTRUCTIONS_RUN", "")
    statuses: list[str] = []

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        statuses.append(status)

    for n in range(count):
        body = json.dumps(event(n, run)).encode()
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/predictions/", "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "127.0.0.1",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": f"Bearer {key}",
            "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        }  # fmt: skip
        answer = application(environ, start_response)
        b"".join(answer)
        answer.close()
        if not statuses[-1].startswith("201"):
            raise SystemExit(f"the hub answered {statuses[-1]}")


def counted(env: dict[str, str], requests: int, run: str) -> int:
    out = Path(env["FEEDBACKHUB_VAR_DIR"]) / f"callgrind.{requests}.out"
    done = subprocess.run(  # noqa: S603 - fixed argv
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__],  # noqa: S607
        env={**env, _CHILD: str(requests), "FEEDBACKHUB_INSTRUCTIONS_RUN": run},
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"valgrind failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def measure(env: dict[str, str]) -> None:
    manage(env, "migrate", "--verbosity", "0")
    key = manage(env, "create_api_key", "bench").split()[-1]
    env = {**env, "FEEDBACKHUB_INSTRUCTIONS_KEY": key}
    progress(f"warming up (the model and version registered), then {REQUESTS_SHORT} and {REQUESTS_LONG} requests")
    subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, __file__], env={**env, _CHILD: "20", "FEEDBACKHUB_INSTRUCTIONS_RUN": "warm"}, check=True
    )
    short = counted(env, REQUESTS_SHORT, "short")
    long = counted(env, REQUESTS_LONG, "long")
    per_request = (long - short) / (REQUESTS_LONG - REQUESTS_SHORT)
    database = "SQLite" if "DATABASE_URL" not in env else "PostgreSQL"
    print(f"single prediction through the WSGI app in process ({database}): {per_request / 1e6:.2f} M instructions")


def main() -> int:
    if os.environ.get(_CHILD):
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedbackhub.settings")
        import django

        django.setup()
        send_requests(int(os.environ[_CHILD]), os.environ["FEEDBACKHUB_INSTRUCTIONS_KEY"])
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind was not found: install it (Debian: apt-get install valgrind)")
    from throwaway_postgres import throwaway_database

    with tempfile.TemporaryDirectory(prefix="feedbackhub-instructions-") as var_dir:
        env = hub_env(Path(var_dir), None)
        if "--sqlite" in sys.argv:
            measure(env)
            return 0
        with throwaway_database("bench_instructions", "PostgreSQL") as url:
            if url is None:
                return 1
            measure({**env, "DATABASE_URL": url})
    return 0


if __name__ == "__main__":
    sys.exit(main())
