from django.db import migrations
from django.db.models import Count, Max, Q, Sum


def start_watermark_and_count_confidences(apps, schema_editor):
    """Drift windows start at the newest prediction (history has no reference to compare with); the confidence
    counters of existing versions are counted once from their predictions."""
    Prediction = apps.get_model("collector", "Prediction")
    VersionTally = apps.get_model("collector", "VersionTally")
    DriftWatermark = apps.get_model("collector", "DriftWatermark")
    latest = Prediction.objects.aggregate(latest=Max("pk"))["latest"] or 0
    DriftWatermark.objects.create(pk=1, last_prediction_id=latest)
    confident = Q(confidence__isnull=False)
    labelled = confident & Q(actual__isnull=False)
    rows = (
        Prediction.objects.filter(confident)
        .values("model_version_id")
        .annotate(
            confident=Count("pk"),
            confidence_sum=Sum("confidence"),
            confident_outcomes=Count("pk", filter=labelled),
            confident_outcomes_confidence_sum=Sum("confidence", filter=labelled),
            confident_outcomes_correct=Count("pk", filter=labelled & Q(is_correct=True)),
        )
    )
    for row in rows:
        version_id = row.pop("model_version_id")
        row["confident_outcomes_confidence_sum"] = row["confident_outcomes_confidence_sum"] or 0.0
        VersionTally.objects.filter(model_version_id=version_id).update(**row)


class Migration(migrations.Migration):
    # Outside a transaction: the scan of the predictions table holds no lock on the counters that every write
    # updates, and each version's row is written on its own (predictions stored by a running old release while
    # this runs are counted by `rebuild_quality_counters`).
    atomic = False

    dependencies = [
        ("collector", "0008_drift"),
    ]

    operations = [
        migrations.RunPython(start_watermark_and_count_confidences, migrations.RunPython.noop),
    ]
