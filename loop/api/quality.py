"""Plain data for the quality figures the API returns (shared by /feedback and the metrics endpoint)."""

from dataclasses import asdict
from typing import Any

from collector.models import DriftCheck
from collector.selectors import VersionQuality, drift_reports


def counts_data(quality: VersionQuality) -> dict[str, int] | None:
    if quality.binary is None:
        return None
    return {**asdict(quality.binary), "total": quality.binary.total}


def metrics_data(quality: VersionQuality) -> dict[str, float | None] | None:
    figures: dict[str, float | None] = dict.fromkeys(("accuracy", "precision", "recall", "f1", "mae", "rmse"))
    if quality.classification is not None:
        figures.update(
            accuracy=quality.classification.accuracy,
            precision=quality.classification.precision,
            recall=quality.classification.recall,
            f1=quality.classification.f1,
        )
    elif quality.regression is not None:
        figures.update(mae=quality.regression.mae, rmse=quality.regression.rmse)
    else:
        return None
    return figures


def drift_data(check: DriftCheck | None) -> dict[str, Any] | None:
    if check is None:
        return None
    return {
        "checked_at": check.created_at,
        "window_start": check.window_start,
        "window_end": check.window_end,
        "window_predictions": check.window_predictions,
        "reference_size": check.reference_size,
        "drifted": check.drifted,
        "reports": [asdict(report) for report in drift_reports(drift_check=check)],
    }


def version_quality_data(quality: VersionQuality, drift_check: DriftCheck | None = None) -> dict[str, Any]:
    classification = quality.classification
    return {
        "version": quality.version,
        "predictions": quality.predictions,
        "outcomes": quality.outcomes,
        "last_outcome_at": quality.last_outcome_at,
        "counts": counts_data(quality),
        "confusion_matrix": [
            {"actual": actual, "predicted": predicted, "count": count}
            for (actual, predicted), count in sorted(quality.cells.items())
        ],
        "metrics": metrics_data(quality),
        "per_class": {label: asdict(s) for label, s in classification.per_class.items()} if classification else {},
        "windows": {name: asdict(window) for name, window in quality.windows.items()},
        "confidence": asdict(quality.confidence) if quality.confidence else None,
        "drift": drift_data(drift_check),
    }
