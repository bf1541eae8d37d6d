"""Review trigger evaluation for a new negative feedback item with 1,000 and with 100,000 stored (goal: median
under 20 ms with 100,000). Each new item takes the text-similarity path (no interaction_id), the costlier one.

Run with `make bench`; uses a throwaway SQLite database (or DATABASE_URL when set).
"""

import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("FEEDBACKHUB_VAR_DIR", tempfile.mkdtemp(prefix="feedbackhub-bench-"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedbackhub.settings")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from collector.models import Feedback, ModelVersion, Prediction, RegisteredModel  # noqa: E402
from reviews.services import review_trigger_evaluate  # noqa: E402
from tests.benchmarks.figures import Figure, report  # noqa: E402

EVALUATIONS = 60
CHUNK = 10_000
TOPICS = [
    "refund amount wrong on invoice", "delivery arrived late again", "password reset link broken",
    "app crashes when uploading photo", "charged twice for subscription", "cannot change billing address",
    "search results irrelevant", "translation is inaccurate", "answer ignored my question", "too slow to respond",
]  # fmt: skip
WORDS = ["please", "help", "urgent", "again", "still", "today", "customer", "order", "account", "support", "issue"]


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(TOPICS)} {' '.join(rng.sample(WORDS, 3))}"


def load(model: RegisteredModel, version: ModelVersion, start: int, stop: int, rng: random.Random) -> None:
    adapt = connection.ops.adapt_datetimefield_value
    now = adapt(datetime.now(UTC))
    for first in range(start, stop, CHUNK):
        last = min(first + CHUNK, stop)
        predictions = [
            Prediction(
                registered_model=model, model_version=version, event_id=f"p{n}", created_at=datetime.now(UTC),
                input={"question": sentence(rng)}, prediction=n % 2, predicted_label=str(n % 2), payload_sha256="x",
            )
            for n in range(first, last)
        ]  # fmt: skip
        with transaction.atomic():
            Prediction.objects.bulk_create(predictions, batch_size=2000)
            rows = [
                (model.pk, p.pk, p.event_id, "", rng.choice(["thumbs_down", "thumbs_up"]), None, sentence(rng), "",
                 uuid.uuid4().hex, now, now, "bench", "x")
                for p in predictions
            ]  # fmt: skip
            with connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {Feedback._meta.db_table} (registered_model_id, prediction_id, prediction_event_id, "  # noqa: S608
                    "interaction_id, kind, value, comment, source, event_id, created_at, received_at, actor, "
                    "payload_sha256) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
        print(f"  stored {last:,} / {stop:,} feedback items", file=sys.stderr, flush=True)


def evaluation_times(model: RegisteredModel, rng: random.Random) -> list[float]:
    times = []
    for _ in range(EVALUATIONS):
        feedback = Feedback.objects.create(
            registered_model=model, kind="thumbs_down", comment=sentence(rng), event_id=uuid.uuid4().hex,
            created_at=datetime.now(UTC), actor="bench", payload_sha256="x",
        )  # fmt: skip
        started = time.perf_counter()
        review_trigger_evaluate(
            feedback=Feedback.objects.select_related("registered_model", "prediction").get(pk=feedback.pk)
        )
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> int:
    call_command("migrate", verbosity=0)
    model = RegisteredModel.objects.create(name="bench", task_type="binary")
    version = ModelVersion.objects.create(registered_model=model, version="v1")
    rng = random.Random(7)
    results, stored = [], 0
    for target in (1_000, 100_000):
        load(model, version, stored, target, rng)
        stored = target
        times = evaluation_times(model, rng)
        results.append((target, statistics.median(times), statistics.quantiles(times, n=20)[-1]))
    baseline = results[0][1]
    print(f"\nReview trigger evaluation ({connection.vendor}, median of {EVALUATIONS} new negative items)\n")
    print("| feedback stored | median ms | p95 ms | ratio to 1,000 |")
    print("|---:|---:|---:|---:|")
    for count, median, p95 in results:
        print(f"| {count:,} | {median:.2f} | {p95:.2f} | {median / baseline:.2f} |")
    goal = results[-1][1]
    print(f"\nGoal: median under 20 ms with 100,000 stored -> {'met' if goal < 20 else 'NOT met'} ({goal:.2f} ms)")
    report(Figure(
        measure=f"review trigger evaluation of a new negative item, 100,000 feedback stored ({connection.vendor})",
        value=f"{goal:.2f} ms", baseline="the same with 1,000 stored", baseline_value=f"{baseline:.2f} ms",
        ratio=f"{goal / baseline:.2f}×", goal="< 20 ms", met=goal < 20,
    ))  # fmt: skip
    return 0 if goal < 20 else 1


if __name__ == "__main__":
    sys.exit(main())
