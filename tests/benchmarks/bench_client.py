"""What `log_feedback` costs the caller's thread: FeedbackCollector against the seed's synchronous SQLite logger.

Run with `python tests/benchmarks/bench_client.py`; no hub needed. The client talks to a tiny in-process HTTP
server that answers 201 to everything. Two measurements of the client:

- "caller only": rounds of 900 calls with batch_size=1000 and a one-hour flush_interval, so the background thread
  sends nothing while a round is timed; flush() between rounds (not timed) empties the queue.
- "while sending": batch_size=100 and flush_interval=0.05, so the background thread encodes and posts batches
  during the timed calls and competes with them for the GIL.

The seed logger is re-implemented below exactly as the seed did it: a new sqlite3 connection, an INSERT and a
commit on every call, in a temporary directory.

Goals: the client's median at most 20 µs, and at least 50 times cheaper than the seed logger.
"""

import http.server
import json
import logging
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from feedbackhub.client import FeedbackCollector  # noqa: E402
from tests.benchmarks.figures import Figure, report  # noqa: E402

CLIENT_CALLS = 90_000
ROUND = 900
SEED_CALLS = 2_000
WARM_UP = 500
GOAL_MEDIAN_US = 20.0
GOAL_RATIO = 50.0
INPUT = {"input_data": [0.5, 1.0, 2.1], "prediction": 1, "actual_value": None, "model_version": "v1.0"}


class SeedFeedbackCollector:
    """The seed's logger, as it was."""

    def __init__(self, db_path: str = "feedback.db") -> None:
        self.db_path = db_path
        self._initialize_database()

    def _initialize_database(self) -> None:
        try:
            with sqlite3.connect(self.db_path) as conn:
                cursor = conn.cursor()
                cursor.execute("""CREATE TABLE IF NOT EXISTS feedback (
                    id INTEGER PRIMARY KEY,
                    timestamp TEXT,
                    input_data TEXT,
                    prediction TEXT,
                    actual_value TEXT,
                    model_version TEXT,
                    latency REAL
                )""")
                conn.commit()
        except Exception as e:
            logging.error(f"Failed to initialize feedback database: {e}")

    def log_feedback(self, input_data, prediction, actual_value, model_version, latency):
        timestamp = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        try:
            with sqlite3.connect(self.db_path) as conn:
                cursor = conn.cursor()
                cursor.execute(
                    """INSERT INTO feedback (timestamp, input_data, prediction, actual_value, model_version, latency)
                    VALUES (?, ?, ?, ?, ?, ?)""",
                    (timestamp, str(input_data), str(prediction), str(actual_value), model_version, latency),
                )
                conn.commit()
                logging.info("Feedback logged successfully.")
        except Exception as e:
            logging.error(f"Failed to log feedback: {e}")


class FakeHub:
    """Answers 201 to every POST and counts the events it was sent."""

    def __init__(self) -> None:
        self.events = 0
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the name http.server looks for
                items = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hub.events += len(items)
                body = json.dumps({"created": len(items), "duplicates": 0, "results": []}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def timed_calls(log: Callable[[], object], calls: int) -> list[float]:
    """Microseconds of each call."""
    durations = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        log()
        durations.append((time.perf_counter_ns() - start) / 1000)
    return durations


def client_caller_only(hub: FakeHub) -> list[float]:
    client = FeedbackCollector(hub.url, "bench-key", batch_size=1000, flush_interval=3600, max_queue=100_000)
    log = client.log_feedback
    timed_calls(lambda: log(**INPUT, latency=0.042), WARM_UP)
    durations: list[float] = []
    client.flush(timeout=30)
    while len(durations) < CLIENT_CALLS:
        durations += timed_calls(lambda: log(**INPUT, latency=0.042), ROUND)
        client.flush(timeout=30)
    client.close()
    return durations


def client_while_sending(hub: FakeHub) -> list[float]:
    client = FeedbackCollector(hub.url, "bench-key", batch_size=100, flush_interval=0.05, max_queue=100_000)
    log = client.log_feedback
    timed_calls(lambda: log(**INPUT, latency=0.042), WARM_UP)
    durations = timed_calls(lambda: log(**INPUT, latency=0.042), CLIENT_CALLS)
    client.close(timeout=30)
    return durations


def seed_logger() -> list[float]:
    with tempfile.TemporaryDirectory(prefix="bench-seed-") as directory:
        seed = SeedFeedbackCollector(str(Path(directory) / "feedback.db"))
        timed_calls(lambda: seed.log_feedback(**INPUT, latency=0.042), 50)
        return timed_calls(lambda: seed.log_feedback(**INPUT, latency=0.042), SEED_CALLS)


def p99(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.99)]


def main() -> int:
    hub = FakeHub()
    results = {
        "FeedbackCollector, caller only (nothing sent while timed)": client_caller_only(hub),
        "FeedbackCollector, while its thread sends to the fake hub": client_while_sending(hub),
        "seed logger (sqlite3 connect + INSERT + commit per call)": seed_logger(),
    }
    hub.close()
    seed_median = statistics.median(results["seed logger (sqlite3 connect + INSERT + commit per call)"])
    print("Client sends to an in-process HTTP server answering 201 (no real hub); seed writes SQLite in a temp dir.")
    print(f"The fake hub received {hub.events:,} events (warm-up calls included).\n")
    print("| logger | calls | median µs | p99 µs | ratio (seed median / median) |")
    print("|---|---:|---:|---:|---:|")
    for name, durations in results.items():
        median = statistics.median(durations)
        print(f"| {name} | {len(durations):,} | {median:.2f} | {p99(durations):.2f} | {seed_median / median:.0f}× |")
    worst_median = max(statistics.median(d) for name, d in results.items() if name.startswith("FeedbackCollector"))
    median_met = worst_median <= GOAL_MEDIAN_US
    ratio_met = seed_median / worst_median >= GOAL_RATIO
    print(
        f"\nGoals: client median ≤ {GOAL_MEDIAN_US:.0f} µs: {'met' if median_met else 'NOT met'} "
        f"({worst_median:.2f} µs, the slower client row); ≥ {GOAL_RATIO:.0f}× cheaper than the synchronous logger: "
        f"{'met' if ratio_met else 'NOT met'} ({seed_median / worst_median:.0f}×)."
    )
    report(Figure(
        measure="client log_feedback in the caller's thread: median (the slower client row)",
        value=f"{worst_median:.2f} µs", baseline="seed-000 logger, synchronous SQLite write per call",
        baseline_value=f"{seed_median:.0f} µs", ratio=f"{seed_median / worst_median:.0f}× cheaper",
        goal=f"≤ {GOAL_MEDIAN_US:.0f} µs", met=median_met,
    ))  # fmt: skip
    return 0 if median_met and ratio_met else 1


if __name__ == "__main__":
    sys.exit(main())
