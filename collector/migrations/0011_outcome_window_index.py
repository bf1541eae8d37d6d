from django.db import migrations, models

from collector.migration_operations import AddIndexConcurrently, RemoveIndexConcurrently


class Migration(migrations.Migration):
    # The new index is built (CONCURRENTLY on PostgreSQL) before the one it replaces is dropped, so scrapes keep an
    # index to read the outcome window from, and predictions keep arriving meanwhile.
    atomic = False

    dependencies = [
        ("collector", "0010_feedback_input_key"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="prediction",
            index=models.Index(
                condition=models.Q(("actual_recorded_at__isnull", False)),
                fields=["model_version", "actual_recorded_at", "is_correct", "error"],
                name="prediction_outcome_window",
            ),
        ),
        RemoveIndexConcurrently(model_name="prediction", name="prediction_recent_outcomes"),
    ]
