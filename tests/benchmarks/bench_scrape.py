"""`/metrics` scrape time with 1,000 and with 1,000,000 predictions stored (goal: ratio at most 1.2).

Run with `make bench`. Uses a throwaway SQLite database under a temporary FEEDBACKHUB_VAR_DIR (or DATABASE_URL
when set), and a second one beside it (a file in the same directory; on PostgreSQL `<name>_small`, dropped after)
for the 1,000 predictions. Rows are loaded with executemany and the counters rebuilt from them, which is much faster
than the API and leaves the same tables; the scrape is what is measured. The two databases are scraped by turns, a
few scrapes each, so that both see the machine as it is at the moment: on a shared machine a scrape's time moves by
half from one minute to the next, which measuring one database and then the other took for the ratio.
"""

import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("FEEDBACKHUB_VAR_DIR", tempfile.mkdtemp(prefix="feedbackhub-bench-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedbackhub.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from collector.counters import counters_rebuild  # noqa: E402
from collector.models import ModelVersion, Prediction, RegisteredModel  # noqa: E402
from tests.benchmarks.figures import Figure, report  # noqa: E402

ROUNDS = 8  # turns of each database
SCRAPES = 5  # measured scrapes a turn, after a warm-up scrape
CHUNK = 20_000
COLUMNS = [
    "registered_model_id", "model_version_id", "event_id", "created_at", "received_at", "source", "input",
    "prediction", "predicted_label", "actual", "actual_label", "actual_recorded_at", "is_correct", "latency_ms",
    "confidence", "interaction_id", "attributes", "payload_sha256",
]  # fmt: skip


def load(
    version: ModelVersion,
    start: int,
    stop: int,
    rng: random.Random,
    *,
    span_seconds: float = 7200,
    rebuild: bool = True,
) -> None:
    """Store predictions `start` to `stop` of `version`, made over the last `span_seconds`, half with outcomes."""
    table = Prediction._meta.db_table
    sql = f"INSERT INTO {table} ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"  # noqa: S608
    adapt = connection.ops.adapt_datetimefield_value
    now = datetime.now(UTC)
    for first in range(start, stop, CHUNK):
        rows = []
        for n in range(first, min(first + CHUNK, stop)):
            predicted = rng.choice("01")
            labelled = n % 2 == 0
            actual = rng.choice("01") if labelled else None
            moment = adapt(now - timedelta(seconds=rng.uniform(0, span_seconds)))
            rows.append((
                version.registered_model_id, version.pk, f"bench-{n}", moment, moment, "api",
                json.dumps({"tenure": n % 48, "plan": "basic"}), json.dumps(int(predicted)), predicted,
                json.dumps(int(actual)) if labelled else None, actual or "", moment if labelled else None,
                (actual == predicted) if labelled else None, rng.lognormvariate(3, 0.5), 0.7, "", "{}", "0" * 64,
            ))  # fmt: skip
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.executemany(sql, rows)
        print(f"  loaded {min(first + CHUNK, stop):,} / {stop:,} predictions", file=sys.stderr, flush=True)
    if rebuild:
        counters_rebuild(model_version_ids=[version.pk])


def scrape_times(client: Client) -> list[float]:
    assert client.get("/metrics").status_code == 200  # the connection opened, the first query's work done
    times = []
    for _ in range(SCRAPES):
        started = time.perf_counter()
        response = client.get("/metrics")
        times.append((time.perf_counter() - started) * 1000)
        assert b'model_accuracy{model="bench"' in response.content
    return times


def use(name: str) -> None:
    """Point the connection at database `name` (it opens at the next query)."""
    connection.close()
    connection.settings_dict["NAME"] = name


@contextmanager
def second_database() -> Iterator[str]:
    """The name of an empty database beside the configured one: on SQLite a file in its directory, on PostgreSQL
    `<name>_small`, dropped on the way out."""
    main = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        yield str(Path(main).with_name("scrape-small.sqlite3"))
        return
    small = f"{main}_small"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{small}"')
    try:
        yield small
    finally:
        use(main)
        with connection.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{small}" WITH (FORCE)')


def filled(name: str, predictions: int, rng: random.Random) -> None:
    use(name)
    call_command("migrate", verbosity=0)
    model = RegisteredModel.objects.create(name="bench", task_type="binary")
    load(ModelVersion.objects.create(registered_model=model, version="v1"), 0, predictions, rng)
    if connection.vendor == "postgresql":
        # As autovacuum would have within a minute of the load: without statistics PostgreSQL planned the scrape's
        # queries over 1,000,000 rows as over a few, 25 times slower.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def main() -> int:
    rng = random.Random(42)
    client = Client()
    main_database = connection.settings_dict["NAME"]
    with second_database() as small_database:
        filled(small_database, 1_000, rng)
        filled(main_database, 1_000_000, rng)
        databases = {1_000: small_database, 1_000_000: main_database}
        times: dict[int, list[float]] = {stored: [] for stored in databases}
        for turn in range(ROUNDS):
            for stored in sorted(databases, reverse=turn % 2 == 1):
                use(databases[stored])
                times[stored] += scrape_times(client)
        use(main_database)
    results = [(stored, statistics.median(t), statistics.quantiles(t, n=20)[-1]) for stored, t in times.items()]
    baseline = results[0][1]
    scrapes = ROUNDS * SCRAPES
    print(f"\n/metrics scrape time ({connection.vendor}, median of {scrapes} scrapes each, by turns)\n")
    print("| predictions stored | median ms | p95 ms | ratio to 1,000 |")
    print("|---:|---:|---:|---:|")
    for stored, median, p95 in results:
        print(f"| {stored:,} | {median:.2f} | {p95:.2f} | {median / baseline:.2f} |")
    ratio = results[-1][1] / baseline
    print(f"\nGoal: ratio at most 1.2 -> {'met' if ratio <= 1.2 else 'NOT met'} ({ratio:.2f})")
    report(Figure(
        measure=f"/metrics scrape, 1,000,000 predictions stored ({connection.vendor})",
        value=f"{results[-1][1]:.2f} ms",
        baseline="the same scrape with 1,000 stored", baseline_value=f"{baseline:.2f} ms", ratio=f"{ratio:.2f}×",
        goal="≤ 1.2×", met=ratio <= 1.2,
    ))  # fmt: skip
    return 0 if ratio <= 1.2 else 1


if __name__ == "__main__":
    sys.exit(main())
