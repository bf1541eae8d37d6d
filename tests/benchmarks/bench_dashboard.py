"""Dashboard and insights server time with 1,000 and with 1,000,000 predictions stored (goal: every page under
250 ms).

Run with `make bench`. A throwaway SQLite database (or DATABASE_URL when set) gets predictions from two versions
spread over 30 days, half with outcomes, one in twenty with human feedback; the counters and hourly rollups are
rebuilt from the rows (as the write path would have kept them). Each page is then fetched in-process with a staff
session: the time is Django's whole request, templates included, not the browser's drawing.
"""

import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("FEEDBACKHUB_VAR_DIR", tempfile.mkdtemp(prefix="feedbackhub-bench-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedbackhub.settings")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from collector.counters import counters_rebuild  # noqa: E402
from collector.models import Feedback, ModelVersion, Prediction, RegisteredModel  # noqa: E402
from collector.payloads import fingerprint  # noqa: E402
from tests.benchmarks.bench_scrape import load  # noqa: E402
from tests.benchmarks.figures import Figure, report  # noqa: E402

FETCHES = 20
PAGES = {
    "overview": "/",
    "model, 1 day (hourly)": "/models/bench/?days=1",
    "model, 7 days (hourly)": "/models/bench/?days=7",
    "model, 30 days (daily)": "/models/bench/?days=30",
    "model, 90 days (daily)": "/models/bench/?days=90",
    "insights (admin), 30 days": "/admin/reviews/reviewtask/insights/?model=bench&days=30",
    "insights (API), 30 days": "/api/v1/insights/?model=bench&days=30",
}
SPAN_SECONDS = 30 * 24 * 3600
GOAL_MS = 250.0


def add_feedback(model: RegisteredModel, every: int) -> None:
    """One feedback item for every `every`-th prediction, at the prediction's time."""
    rng = random.Random(7)
    kinds = ["thumbs_up", "thumbs_up", "thumbs_down", "rating", "correction"]
    rows = []
    for pk, event_id, created_at, input in Prediction.objects.filter(registered_model=model).values_list(
        "pk", "event_id", "created_at", "input"
    )[::every]:
        kind = rng.choice(kinds)
        rows.append(Feedback(
            registered_model=model, prediction_id=pk, prediction_event_id=event_id, kind=kind,
            value=rng.randint(1, 5) if kind == "rating" else None, event_id=f"fb-{pk}", created_at=created_at,
            actor="bench", payload_sha256="0" * 64, input_sha256=fingerprint(input),
        ))  # fmt: skip
    rows.sort(key=lambda row: row.created_at)  # stored in the order it arrives, as the API would have stored it
    with transaction.atomic():
        Feedback.objects.bulk_create(rows, batch_size=2000)
    print(f"  added {len(rows):,} feedback items", file=sys.stderr, flush=True)


def page_times(client: Client) -> dict[str, tuple[float, float]]:
    results = {}
    for name, path in PAGES.items():
        for _ in range(3):
            assert client.get(path).status_code == 200
        times = []
        for _ in range(FETCHES):
            started = time.perf_counter()
            response = client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
        results[name] = (statistics.median(times), statistics.quantiles(times, n=20)[-1])
    return results


def main() -> int:
    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)  # pages name hashed static files, as in production
    model = RegisteredModel.objects.create(name="bench", task_type="binary")
    versions = [ModelVersion.objects.create(registered_model=model, version=name) for name in ("v1", "v2")]
    staff = get_user_model().objects.create_superuser("bench", password="unused-password")
    client = Client()
    client.force_login(staff)
    rng = random.Random(42)
    measured = {}
    stored = 0
    for target in (1_000, 1_000_000):
        half = (target - stored) // 2
        load(versions[0], stored, stored + half, rng, span_seconds=SPAN_SECONDS, rebuild=False)
        load(versions[1], stored + half, target, rng, span_seconds=SPAN_SECONDS / 2, rebuild=False)
        Feedback.objects.filter(registered_model=model).delete()
        add_feedback(model, every=20)
        started = time.perf_counter()
        counters_rebuild()
        print(f"  rebuilt counters and rollups in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
        stored = target
        measured[target] = page_times(client)
    print(f"\nDashboard server time ({connection.vendor}, {datetime.now(UTC):%Y-%m-%d}, median of {FETCHES})\n")
    print("| page | 1,000 predictions: median ms | 1,000,000: median ms | 1,000,000: p95 ms | ratio | goal |")
    print("|---|---:|---:|---:|---:|---|")
    worst = 0.0
    for name in PAGES:
        small, (large, large_p95) = measured[1_000][name][0], measured[1_000_000][name]
        worst = max(worst, large)
        print(f"| {name} | {small:.1f} | {large:.1f} | {large_p95:.1f} | {large / small:.2f} | < {GOAL_MS:.0f} ms |")
    print(f"\nGoal: every page under {GOAL_MS:.0f} ms -> {'met' if worst < GOAL_MS else 'NOT met'} ({worst:.1f} ms)")
    for name in PAGES:
        small, large = measured[1_000][name][0], measured[1_000_000][name][0]
        report(Figure(
            measure=f"{name}: server time, 1,000,000 predictions ({connection.vendor})", value=f"{large:.1f} ms",
            baseline="the same page with 1,000 stored", baseline_value=f"{small:.1f} ms",
            ratio=f"{large / small:.2f}×", goal=f"< {GOAL_MS:.0f} ms", met=large < GOAL_MS,
        ))  # fmt: skip
    return 0 if worst < GOAL_MS else 1


if __name__ == "__main__":
    sys.exit(main())
