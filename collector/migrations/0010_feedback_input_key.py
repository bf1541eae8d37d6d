import hashlib
import json
from collections import defaultdict

from django.db import migrations, models

from collector.migration_operations import AddIndexConcurrently

BATCH = 2_000


def _input_sha256(value):
    # The canonical form collector.payloads.fingerprint gives, copied so this migration never changes with it.
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def key_linked_feedback_by_input(apps, schema_editor):
    """Feedback linked to a prediction gets the hash of that prediction's input, a batch at a time."""
    Feedback = apps.get_model("collector", "Feedback")
    last = 0
    while True:
        batch = list(
            Feedback.objects.filter(pk__gt=last, prediction__isnull=False)
            .order_by("pk")
            .values_list("pk", "prediction__input")[:BATCH]
        )
        if not batch:
            return
        by_key = defaultdict(list)
        for pk, value in batch:
            by_key[_input_sha256(value)].append(pk)
        for key, pks in by_key.items():
            Feedback.objects.filter(pk__in=pks).update(input_sha256=key)
        last = batch[-1][0]


class Migration(migrations.Migration):
    # Outside one transaction: the index is built CONCURRENTLY on PostgreSQL and each batch of the backfill commits
    # on its own, so feedback keeps arriving while this runs (feedback the old release links meanwhile is keyed by
    # `manage.py rebuild_quality_counters`).
    atomic = False

    dependencies = [
        ("collector", "0009_drift_watermark_and_confidence_backfill"),
    ]

    operations = [
        migrations.AddField(
            model_name="feedback",
            name="input_sha256",
            field=models.CharField(
                blank=True,
                db_default="",
                default="",
                editable=False,
                help_text="SHA-256 of the linked prediction's input (canonical JSON): groups feedback by input "
                "without a join to the predictions table.",
                max_length=64,
            ),
        ),
        AddIndexConcurrently(
            model_name="feedback",
            index=models.Index(fields=["registered_model", "created_at"], name="feedback_model_time"),
        ),
        migrations.RunPython(key_linked_feedback_by_input, migrations.RunPython.noop, elidable=True),
    ]
