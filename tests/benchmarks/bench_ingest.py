"""Ingest throughput over HTTP: gunicorn with 2 workers on SQLite and PostgreSQL, beside what SQLite itself allows.

Run with `python tests/benchmarks/bench_ingest.py`. Everything listens on 127.0.0.1 only. Each database gets a
throwaway home: SQLite under a temporary FEEDBACKHUB_VAR_DIR, PostgreSQL a database `bench_ingest_<pid>` on
127.0.0.1:5432 (or PGHOST/PGPORT/PGUSER), created and dropped here; PostgreSQL is skipped with a note when it
cannot be reached. For each: `manage.py migrate`, an API key from `manage.py create_api_key` (the service
`api_key_create`), then gunicorn started as `make run` starts it (`feedbackhub.wsgi:application`, 2 workers,
`-c python:feedbackhub.gunicorn_conf`; 4 threads a worker unless WEB_THREADS says otherwise).

The load generator is one process on the same 2 cores, so it is kept lean: one thread over raw non-blocking sockets
(an asyncio stream cost several times more CPU per request), every request's bytes built before timing; it keeps
connections open where the server allows, from a phase's warm-up into the phase itself as a client's pool would
(reconnecting where the server closes them), reads responses by Content-Length, and checks only the status line.
Each phase has a warm-up, then runs for a fixed time. On PostgreSQL the tables are analyzed after the first warm-up,
as autovacuum would have analyzed them on a live database: PostgreSQL's plans follow its statistics.

1. Single events: `POST /api/v1/predictions/` with one JSON object per request, a distinct event_id each, over
   SINGLE_CONNECTIONS connections at once: requests/s and p50/p99 latency. Baseline: the seed-000 logger, in
   process (a new sqlite3 connection, an INSERT and a commit per call, in a temporary directory), calls/s.
   Goal: at least 1.0× the seed logger's calls/s, on each database.
2. Batches: 1,000 events per request over BATCH_CONNECTIONS connections: events/s. Ceiling: raw `sqlite3`
   `executemany` of 1,000 such rows in one transaction, into a table made from the migrated database's own
   CREATE TABLE / CREATE INDEX statements (read from sqlite_master), with the same journal settings as the hub
   (WAL, synchronous=NORMAL). Goal: at least 20% of the ceiling over HTTP on SQLite; PostgreSQL is reported
   beside the same ceiling, without a goal.

Standard error also shows each worker's CPU seconds in the single-event phase: the two should be close, and a worker
that served little points at how the connections were spread over the workers.

Other work on the machine moves every figure, so each baseline is measured just before and just after the phase
it is compared with (its mean is the baseline), and the ratios are what to read: absolute numbers from different
runs do not compare. The seed logger commits with fsync, so its figure also follows the disk's load.
"""

import json
import os
import selectors
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_client import SeedFeedbackCollector  # noqa: E402
from figures import Figure, report  # noqa: E402
from throwaway_postgres import throwaway_database  # noqa: E402

HOST = "127.0.0.1"
PATH = "/api/v1/predictions/"
WORKERS = 2
SINGLE_CONNECTIONS = 8
SINGLE_WARM_UP_SECONDS = 5.0  # both workers import the project when they boot, a few seconds on a busy machine
SINGLE_SECONDS = 10.0
BATCH_SIZE = 1000
BATCH_CONNECTIONS = 2
BATCH_WARM_UP = 4
BATCH_REQUESTS = 60
SEED_SECONDS = 3.0
CEILING_ROUNDS = 15
GOAL_SINGLE_RATIO = 1.0
GOAL_BATCH_SHARE = 0.20


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def event(n: int, run: str) -> dict:
    return {
        "model": "bench",
        "version": "v1",
        "input": {"tenure": n % 48, "plan": "basic", "monthly_charges": 42.5, "text": "customer asked about billing"},
        "prediction": n % 2,
        "latency_ms": 12.5,
        "confidence": 0.8,
        "attributes": {"region": "eu"},
        "event_id": f"{run}-{n}",
    }


def request_bytes(body: bytes, key: str) -> bytes:
    head = (
        f"POST {PATH} HTTP/1.1\r\nHost: {HOST}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


# --- the load generator ------------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


class _Exchange:
    """One connection's request in flight: the bytes still to send, the answer read so far, when it was sent, and
    whether the connection was kept from an earlier phase (the server may have closed it as idle meanwhile)."""

    def __init__(self, payload: bytes, sock: socket.socket, *, kept: bool = False) -> None:
        self.sock = sock
        self.payload = payload
        self.unsent = memoryview(payload)
        self.answer = bytearray()
        self.started = time.perf_counter()
        self.kept = kept

    def answered(self) -> tuple[int, bool] | None:
        """(status, whether the server closes the connection) once the whole answer is in, else None."""
        head_end = self.answer.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = bytes(self.answer[:head_end]).lower()
        start = head.find(b"content-length:")
        line_end = head.find(b"\r\n", start)
        if start < 0 and b"transfer-encoding: chunked" in head:
            raise SystemExit("the hub answered without Content-Length (chunked): this load generator reads by length")
        length = int(head[start + 15 : line_end if line_end >= 0 else len(head)]) if start >= 0 else 0
        if len(self.answer) < head_end + 4 + length:
            return None
        return int(head[9:12]), b"connection: close" in head


def _connect(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    sock.connect_ex((HOST, port))
    return sock


class Connections:
    """A phase's connections, kept open into the next phase as a client's connection pool keeps them. A phase that
    opened connections of its own just after the last one closed its own could find both workers still counting the
    closed ones, and put all its connections on one worker (half the batch rate, on some runs only)."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.kept: list[socket.socket] = []

    def take(self) -> list[tuple[socket.socket, bool]]:
        """`count` connections, and whether each is kept from an earlier phase."""
        kept, self.kept = self.kept, []
        return [(sock, True) for sock in kept] + [(_connect(self.port), False) for _ in range(self.count - len(kept))]

    def close(self) -> None:
        for sock in self.kept:
            sock.close()
        self.kept = []


def _drive(payloads: list[bytes], connections: Connections, seconds: float | None) -> LoadResult:
    """Send `payloads` over the connections at once, each sending its next request when the answer to the last is in;
    until they run out or `seconds` pass. One thread and raw non-blocking sockets: it shares the cores with the hub,
    and an asyncio stream costs several times more CPU per request."""
    queue = iter(payloads)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    selector = selectors.DefaultSelector()
    deadline = None if seconds is None else time.perf_counter() + seconds

    def send_next(sock: socket.socket | None, *, kept: bool = False) -> None:
        payload = None if deadline is not None and time.perf_counter() >= deadline else next(queue, None)
        if payload is None:
            if sock is not None:
                connections.kept.append(sock)
            return
        sock = sock or _connect(connections.port)
        selector.register(sock, selectors.EVENT_WRITE, _Exchange(payload, sock, kept=kept))

    def closed_before_answering(exchange: _Exchange) -> None:
        selector.unregister(exchange.sock)
        exchange.sock.close()
        if not exchange.kept or exchange.answer:
            raise SystemExit("the hub closed a connection before answering; see the gunicorn output above")
        # A kept connection that the server closed as idle (gunicorn's keepalive) as this request went out: the request
        # goes again on a new connection, as a client's pool does (the event_id makes it safe to repeat anyway).
        fresh = _connect(connections.port)
        selector.register(fresh, selectors.EVENT_WRITE, _Exchange(exchange.payload, fresh))

    started = time.perf_counter()
    for sock, kept in connections.take():
        send_next(sock, kept=kept)
    while selector.get_map():
        for key, events in selector.select():
            exchange: _Exchange = key.data
            if events & selectors.EVENT_WRITE:
                try:
                    sent = exchange.sock.send(exchange.unsent)
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    closed_before_answering(exchange)
                    continue
                exchange.unsent = exchange.unsent[sent:]
                if not exchange.unsent:
                    selector.modify(exchange.sock, selectors.EVENT_READ, exchange)
                continue
            try:
                chunk = exchange.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                closed_before_answering(exchange)
                continue
            exchange.answer += chunk
            done = exchange.answered()
            if done is None:
                continue
            status, closes = done
            latencies.append((time.perf_counter() - exchange.started) * 1000)
            statuses[status] = statuses.get(status, 0) + 1
            selector.unregister(exchange.sock)
            if closes:
                exchange.sock.close()
            send_next(None if closes else exchange.sock)
    selector.close()
    return LoadResult(len(latencies), time.perf_counter() - started, latencies, statuses)


def drive(payloads: list[bytes], connections: Connections, seconds: float | None = None) -> LoadResult:
    result = _drive(payloads, connections, seconds)
    bad = {status: n for status, n in result.statuses.items() if status not in (200, 201)}
    if bad:
        raise SystemExit(f"the hub answered {bad} (status: count); see the gunicorn output above")
    return result


# --- the hub under test ------------------------------------------------------------------------------


@dataclass
class Hub:
    name: str
    env: dict[str, str]
    key: str
    port: int
    process: subprocess.Popen

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def start_hub(name: str, env: dict[str, str]) -> Hub:
    progress(f"[{name}] migrating a fresh database")
    manage(env, "migrate", "--verbosity", "0")
    key = manage(env, "create_api_key", "bench").strip().splitlines()[-1]
    port = free_port()
    command = [
        sys.executable, "-m", "gunicorn", "feedbackhub.wsgi:application", "--workers", str(WORKERS),
        "--bind", f"{HOST}:{port}", "--config", "python:feedbackhub.gunicorn_conf",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env, cwd=ROOT)  # noqa: S603 - fixed argv
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        raise SystemExit(f"[{name}] gunicorn did not listen on {HOST}:{port} within 60 s")
    progress(f"[{name}] gunicorn (pid {process.pid}) listens on {HOST}:{port}")
    return Hub(name, env, key, port, process)


def hub_env(var_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {**os.environ, "FEEDBACKHUB_VAR_DIR": str(var_dir), "ALLOWED_HOSTS": HOST, "LOG_LEVEL": "WARNING"}
    env.pop("DATABASE_URL", None)
    if database_url:
        env["DATABASE_URL"] = database_url
    multiproc = var_dir / "prometheus-multiproc"
    multiproc.mkdir(parents=True, exist_ok=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(multiproc)
    return env


def workers_cpu_seconds(hub: Hub) -> dict[int, float]:
    """CPU seconds (user and system) each gunicorn worker process of the hub has used so far, by pid; empty without
    /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == hub.process.pid:  # the parent's pid: a worker of this master
            seconds[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return seconds


@dataclass
class HubFigures:
    single: LoadResult
    batch: LoadResult
    seed: float  # the seed logger's calls/s, measured just before and just after the single-event phase
    ceiling: float  # executemany's events/s, measured just before and just after the batch phase

    @property
    def events_per_second(self) -> float:
        return self.batch.requests * BATCH_SIZE / self.batch.seconds


def measure_hub(hub: Hub, baselines: "Baselines") -> HubFigures:
    """The hub's figures, each bracketed by its baseline, so both see the same load from whatever else runs."""
    run = f"{hub.name}-{os.getpid()}"
    singles = [
        request_bytes(json.dumps(event(n, run)).encode(), hub.key) for n in range(int(SINGLE_SECONDS * 4000) + 4000)
    ]
    progress(f"[{hub.name}] single events: {SINGLE_WARM_UP_SECONDS:.0f} s warm-up, then {SINGLE_SECONDS:.0f} s")
    connections = Connections(hub.port, SINGLE_CONNECTIONS)
    warm = drive(singles, connections, SINGLE_WARM_UP_SECONDS)
    analyze_as_autovacuum_would(hub)
    seed_before = baselines.seed_calls_per_second()
    cpu_before = workers_cpu_seconds(hub)
    single = drive(singles[warm.requests :], connections, SINGLE_SECONDS)
    cpu_after = workers_cpu_seconds(hub)
    connections.close()
    if cpu_before and cpu_before.keys() == cpu_after.keys():
        # The workers should share the load: one that served little points at the connections' balance.
        spent = ", ".join(f"{cpu_after[pid] - cpu_before[pid]:.1f}" for pid in sorted(cpu_before))
        progress(f"[{hub.name}] CPU seconds of each worker in the single-event phase: {spent}")
    seed_after = baselines.seed_calls_per_second()
    first = len(singles)
    batches = [
        request_bytes(json.dumps([event(first + b * BATCH_SIZE + i, run) for i in range(BATCH_SIZE)]).encode(), hub.key)
        for b in range(BATCH_WARM_UP + BATCH_REQUESTS)
    ]
    progress(f"[{hub.name}] batches of {BATCH_SIZE}: {BATCH_WARM_UP} warm-up, then {BATCH_REQUESTS}")
    connections = Connections(hub.port, BATCH_CONNECTIONS)
    drive(batches[:BATCH_WARM_UP], connections)
    ceiling_before = baselines.executemany_events_per_second()
    batch = drive(batches[BATCH_WARM_UP:], connections)
    connections.close()
    ceiling_after = baselines.executemany_events_per_second()
    return HubFigures(single, batch, (seed_before + seed_after) / 2, (ceiling_before + ceiling_after) / 2)


def analyze_as_autovacuum_would(hub: Hub) -> None:
    """On PostgreSQL, ANALYZE the tables the warm-up filled. A live database has statistics (autovacuum gathers them a
    minute or so after a table changes), and PostgreSQL's plans follow them; a fresh one has none for the few seconds
    this benchmark runs."""
    url = hub.env.get("DATABASE_URL")
    if url:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("ANALYZE")


def sqlite_hub_figures(var_dir: Path, directory: Path) -> tuple[HubFigures, "Baselines"]:
    hub = start_hub("SQLite", hub_env(var_dir, None))
    try:
        with sqlite3.connect(var_dir / "db.sqlite3") as conn:
            query = "SELECT sql FROM sqlite_master WHERE tbl_name = 'collector_prediction' AND sql IS NOT NULL"
            ddl = [sql for (sql,) in conn.execute(f"{query} ORDER BY type DESC")]
        baselines = Baselines(directory, ddl)
        return measure_hub(hub, baselines), baselines
    finally:
        hub.stop()


def postgres_hub_figures(var_dir: Path, baselines: "Baselines") -> HubFigures | None:
    with throwaway_database("bench_ingest", "PostgreSQL") as database_url:
        if database_url is None:
            return None
        hub = start_hub("PostgreSQL", hub_env(var_dir, database_url))
        try:
            return measure_hub(hub, baselines)
        finally:
            hub.stop()


# --- baselines ---------------------------------------------------------------------------------------


CEILING_COLUMNS = [
    "registered_model_id", "model_version_id", "event_id", "created_at", "received_at", "source", "input",
    "prediction", "predicted_label", "actual", "actual_label", "is_correct", "latency_ms", "confidence",
    "interaction_id", "attributes", "payload_sha256",
]  # fmt: skip


class Baselines:
    """The seed logger and the executemany ceiling, measured again beside each phase they are compared with."""

    def __init__(self, directory: Path, ddl: list[str]) -> None:
        self._seed = SeedFeedbackCollector(str(directory / "feedback.db"))
        for _ in range(20):
            self._seed.log_feedback([0.5, 1.0, 2.1], 1, None, "v1.0", 0.042)
        self._ceiling = sqlite3.connect(directory / "ceiling.sqlite3")
        self._ceiling.execute("PRAGMA journal_mode=WAL")
        self._ceiling.execute("PRAGMA synchronous=NORMAL")
        for statement in ddl:
            self._ceiling.execute(statement)
        self._ceiling.commit()
        self._rounds = 0
        self.executemany_events_per_second()  # a first round to warm up

    def seed_calls_per_second(self) -> float:
        progress(f"[seed] the seed-000 logger in process for {SEED_SECONDS:.0f} s")
        calls = 0
        started = time.perf_counter()
        while time.perf_counter() - started < SEED_SECONDS:
            self._seed.log_feedback([0.5, 1.0, 2.1], 1, None, "v1.0", 0.042)
            calls += 1
        return calls / (time.perf_counter() - started)

    def executemany_events_per_second(self) -> float:
        """Events/s of raw executemany, 1,000 rows per transaction: the median of CEILING_ROUNDS rounds."""
        progress(f"[ceiling] raw sqlite3 executemany, {CEILING_ROUNDS} rounds of {BATCH_SIZE} rows")
        placeholders = ", ".join("?" * len(CEILING_COLUMNS))
        sql = f"INSERT INTO collector_prediction ({', '.join(CEILING_COLUMNS)}) VALUES ({placeholders})"  # noqa: S608
        now = datetime.now(UTC).replace(tzinfo=None).isoformat(" ")
        rates = []
        for _ in range(CEILING_ROUNDS):
            first = self._rounds * BATCH_SIZE
            self._rounds += 1
            rows = []
            for n in range(first, first + BATCH_SIZE):
                item = event(n, "ceiling")
                rows.append((
                    1, 1, item["event_id"], now, now, "api", json.dumps(item["input"]), json.dumps(item["prediction"]),
                    str(item["prediction"]), None, "", None, item["latency_ms"], item["confidence"], "",
                    json.dumps(item["attributes"]), "0" * 64,
                ))  # fmt: skip
            started = time.perf_counter()
            with self._ceiling:
                self._ceiling.executemany(sql, rows)
            rates.append(BATCH_SIZE / (time.perf_counter() - started))
        return statistics.median(rates)


# --- the figures -------------------------------------------------------------------------------------


def server_text() -> str:
    """The gunicorn processes and threads the hub ran with, as its config reads them (WEB_THREADS)."""
    from feedbackhub.gunicorn_conf import threads

    return f"gunicorn {WORKERS} workers" + (f" × {threads} threads" if threads > 1 else "")


def single_figure(name: str, hub: HubFigures) -> Figure:
    seed = hub.seed
    ratio = hub.single.rate / seed
    return Figure(
        measure=f"single-event HTTP ingest, {server_text()}, {name}: req/s (p50 / p99 ms)",
        value=f"{hub.single.rate:,.0f} req/s (p50 {hub.single.percentile(0.5):.1f} ms, "
        f"p99 {hub.single.percentile(0.99):.1f} ms)",
        baseline="seed-000 logger in-process (sqlite3 connect+INSERT+commit per call)",
        baseline_value=f"{seed:,.0f} calls/s",
        ratio=f"{ratio:.2f}×",
        goal=f"≥ {GOAL_SINGLE_RATIO:.1f}×",
        met=ratio >= GOAL_SINGLE_RATIO,
    )


def batch_figure(name: str, hub: HubFigures, *, with_goal: bool) -> Figure:
    ceiling = hub.ceiling
    share = hub.events_per_second / ceiling
    return Figure(
        measure=f"batched HTTP ingest ({BATCH_SIZE:,} events/request), {server_text()}, {name}: events/s",
        value=f"{hub.events_per_second:,.0f} events/s",
        baseline=f"raw sqlite3 executemany of {BATCH_SIZE:,} rows per transaction, same DDL, WAL",
        baseline_value=f"{ceiling:,.0f} events/s",
        ratio=f"{share:.0%} ({share:.2f}×)",
        goal=f"≥ {GOAL_BATCH_SHARE:.0%} of the ceiling" if with_goal else "",
        met=share >= GOAL_BATCH_SHARE if with_goal else None,
    )


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="feedbackhub-bench-ingest-") as directory:
        base = Path(directory)
        for name in ("sqlite", "postgres", "baselines"):
            (base / name).mkdir()
        sqlite_figures, baselines = sqlite_hub_figures(base / "sqlite", base / "baselines")
        postgres_figures = postgres_hub_figures(base / "postgres", baselines)
    figures = [single_figure("SQLite", sqlite_figures)]
    if postgres_figures is not None:
        figures.append(single_figure("PostgreSQL", postgres_figures))
    figures.append(batch_figure("SQLite", sqlite_figures, with_goal=True))
    if postgres_figures is not None:
        figures.append(batch_figure("PostgreSQL", postgres_figures, with_goal=False))
    print(f"\nIngest over HTTP on {HOST}, gunicorn {WORKERS} workers, load generator on the same machine.\n")
    print("| measure | figure | baseline | baseline figure | ratio | goal | met |")
    print("|---|---:|---|---:|---:|---|---|")
    for f in figures:
        report(f)
        met = "" if f.met is None else ("yes" if f.met else "NO")
        print(f"| {f.measure} | {f.value} | {f.baseline} | {f.baseline_value} | {f.ratio} | {f.goal} | {met} |")
    for name, hub in (("SQLite", sqlite_figures), ("PostgreSQL", postgres_figures)):
        if hub is not None:
            print(
                f"\n{name}: {hub.single.requests:,} single requests in {hub.single.seconds:.1f} s over "
                f"{SINGLE_CONNECTIONS} connections; {hub.batch.requests} batches in {hub.batch.seconds:.1f} s over "
                f"{BATCH_CONNECTIONS} connections (batch p50 {hub.batch.percentile(0.5):.0f} ms)."
            )
    unmet = [f.measure for f in figures if f.met is False]
    print("\nGoals: " + ("all met." if not unmet else "NOT met: " + "; ".join(unmet)))
    return 1 if unmet else 0


if __name__ == "__main__":
    sys.exit(main())
