"""Writes of drift monitoring: reference sketches, the hourly window counts, and the checks comparing the two.

A reference is built once per model version: from its training set when the hub promotes it
(`drift_reference_record`, called by the loop), else from the version's first predictions. The ingest path does
no drift work: a task reads the predictions stored since a watermark (the last prediction id it counted), in
chunks, and adds their features to hourly counts in the reference's bins. A check sums the hours of the window
and compares them with the reference; it never reads the predictions table.
"""

import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import takewhile, zip_longest
from typing import Any

from django.db import transaction
from django.utils import timezone

from collector.labels import LabelError, label_for
from collector.models import (
    DriftCheck,
    DriftMethod,
    DriftPolicy,
    DriftReference,
    DriftReferenceSource,
    DriftReport,
    DriftWatermark,
    DriftWindowHour,
    ModelVersion,
    Prediction,
    RegisteredModel,
    VersionTally,
)
from collector.sketches import (
    NUMERIC,
    Binner,
    Spec,
    Value,
    chi_square,
    input_features,
    ks,
    merged,
    output_features,
    psi,
    reference_sketch,
)

logger = logging.getLogger(__name__)
REFERENCE_MAX_SAMPLES = 20_000
CHUNK = 2000
# A run of the beat task counts for up to this long, so the windows keep up with thousands of predictions a second
# without one run outliving the next.
UPDATE_BUDGET = timedelta(seconds=120)
# Rows younger than this are left for the next run: a transaction that took an id earlier may not have committed.
WATERMARK_LAG = timedelta(seconds=30)
CHECK_INTERVAL = timedelta(minutes=15)
KEEP_CHECKS = timedelta(days=30)
ROW_FIELDS = (
    "pk",
    "model_version_id",
    "received_at",
    "created_at",
    "input",
    "prediction",
    "predicted_label",
    "confidence",
)


def drift_policy_for(registered_model: RegisteredModel) -> DriftPolicy:
    policy, _ = DriftPolicy.objects.get_or_create(registered_model=registered_model)
    return policy


def _spread(values: Sequence[Any], limit: int) -> Sequence[Any]:
    """At most `limit` values, evenly spaced over the sequence (a training set is ordered by time)."""
    if len(values) <= limit:
        return values
    step = len(values) / limit
    return [values[int(index * step)] for index in range(limit)]


# --- references -------------------------------------------------------------------------------------


def _reference_save(
    *,
    model_version: ModelVersion,
    inputs: Sequence[dict[str, Value]],
    outputs: Sequence[dict[str, Value]],
    source: str,
    through_prediction_id: int = 0,
) -> DriftReference:
    with transaction.atomic():
        reference, _ = DriftReference.objects.update_or_create(
            model_version=model_version,
            defaults={
                "source": source,
                "sample_size": len(inputs),
                "through_prediction_id": through_prediction_id,
                "inputs": reference_sketch(inputs),
                "outputs": reference_sketch(outputs),
                "last_check": None,
            },
        )
        # Counts kept in the bins of a replaced reference mean nothing in the new one.
        DriftWindowHour.objects.filter(model_version=model_version).delete()
    return reference


def drift_reference_record(
    *,
    model_version: ModelVersion,
    inputs: Sequence[Any],
    predictions: Sequence[Any] = (),
    confidences: Sequence[float | None] = (),
) -> DriftReference:
    """The reference of a version the hub trained, from its training inputs (call it at promotion).

    `predictions` and `confidences` are the version's own outputs on those inputs (or on the holdout), for the
    reference of its score and prediction; without them only its inputs are watched. Replaces an earlier reference.
    """
    task_type = model_version.registered_model.task_type
    outputs = []
    for predicted, confidence in _spread(list(zip_longest(predictions, confidences)), REFERENCE_MAX_SAMPLES):
        try:
            label = label_for(task_type, predicted) if predicted is not None else ""
        except LabelError:
            label = ""
        outputs.append(output_features(predicted_label=label, prediction=predicted, confidence=confidence))
    return _reference_save(
        model_version=model_version,
        inputs=[input_features(given) for given in _spread(inputs, REFERENCE_MAX_SAMPLES)],
        outputs=outputs,
        source=DriftReferenceSource.TRAINING,
    )


def drift_reference_from_predictions(*, model_version: ModelVersion, size: int) -> DriftReference | None:
    """The reference of a version trained elsewhere: its first `size` predictions. None while it has fewer."""
    rows = list(
        Prediction.objects.filter(model_version=model_version)
        .order_by("created_at", "pk")
        .values_list("pk", "input", "prediction", "predicted_label", "confidence")[: min(size, REFERENCE_MAX_SAMPLES)]
    )
    if not rows or len(rows) < min(size, REFERENCE_MAX_SAMPLES):
        return None
    return _reference_save(
        model_version=model_version,
        inputs=[input_features(given) for _, given, *_ in rows],
        outputs=[
            output_features(predicted_label=label, prediction=predicted, confidence=confidence)
            for _, _, predicted, label, confidence in rows
        ],
        source=DriftReferenceSource.PREDICTIONS,
        through_prediction_id=max(pk for pk, *_ in rows),
    )


def _policies() -> dict[int, DriftPolicy]:
    return {policy.registered_model_id: policy for policy in DriftPolicy.objects.all()}


def drift_references_build_due() -> list[DriftReference]:
    """References for versions without one that have reached their model's reference size."""
    policies = _policies()
    built = []
    waiting = VersionTally.objects.filter(model_version__drift_reference__isnull=True).select_related("model_version")
    for tally in waiting:
        policy = policies.get(tally.model_version.registered_model_id) or DriftPolicy()
        if policy.enabled and tally.predictions >= policy.reference_size:
            reference = drift_reference_from_predictions(model_version=tally.model_version, size=policy.reference_size)
            if reference is not None:
                built.append(reference)
    return built


# --- current windows --------------------------------------------------------------------------------


def _hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def _watermark() -> DriftWatermark:
    # The migration creates the row at the newest prediction, so an existing hub does not count its history.
    mark, _ = DriftWatermark.objects.get_or_create(pk=1)
    return mark


def drift_windows_update(*, max_chunks: int | None = None, budget: timedelta = UPDATE_BUDGET) -> int:
    """Count the predictions stored since the watermark into their versions' hourly windows, chunk by chunk until
    caught up, `max_chunks` were counted or `budget` is spent (the next run goes on from the watermark); returns
    how many predictions were read. Safe to run concurrently: each chunk is claimed by moving the watermark."""
    cutoff = timezone.now() - WATERMARK_LAG
    deadline = time.monotonic() + budget.total_seconds()
    total = chunks = 0
    while (max_chunks is None or chunks < max_chunks) and time.monotonic() < deadline:
        counted = _count_chunk(cutoff)
        if not counted:
            break
        total += counted
        chunks += 1
    return total


def _count_chunk(cutoff: datetime) -> int:
    with transaction.atomic():
        last = _watermark().last_prediction_id
        rows = Prediction.objects.filter(pk__gt=last).order_by("pk").values_list(*ROW_FIELDS)[:CHUNK]
        chunk = list(takewhile(lambda row: row[2] <= cutoff, rows))
        if not chunk:
            return 0
        moved = DriftWatermark.objects.filter(pk=1, last_prediction_id=last).update(
            last_prediction_id=chunk[-1][0], updated_at=timezone.now()
        )
        if moved != 1:  # another worker counted this chunk
            return 0
        _add_to_windows(chunk)
    return len(chunk)


def _add_to_windows(rows: list[tuple]) -> None:
    references = {
        reference.model_version_id: reference
        for reference in DriftReference.objects.filter(model_version_id__in={row[1] for row in rows})
    }
    binners = {
        version_id: (Binner(reference.inputs), Binner(reference.outputs))
        for version_id, reference in references.items()
    }
    buckets: dict[tuple[int, datetime], DriftWindowHour] = {}
    for pk, version_id, _, created_at, given, predicted, label, confidence in rows:
        reference = references.get(version_id)
        if reference is None or pk <= reference.through_prediction_id:
            continue
        key = (version_id, _hour(created_at))
        bucket = buckets.setdefault(key, DriftWindowHour(model_version_id=version_id, hour=key[1]))
        bucket.predictions += 1
        inputs, outputs = binners[version_id]
        inputs.add(bucket.inputs, input_features(given))
        outputs.add(bucket.outputs, output_features(predicted_label=label, prediction=predicted, confidence=confidence))
    if not buckets:
        return
    stored = DriftWindowHour.objects.select_for_update().filter(
        model_version_id__in={version_id for version_id, _ in buckets}, hour__in={hour for _, hour in buckets}
    )
    to_update = []
    for row in stored:
        new = buckets.pop((row.model_version_id, row.hour), None)
        if new is not None:
            row.predictions += new.predictions
            row.inputs = merged(row.inputs, new.inputs)
            row.outputs = merged(row.outputs, new.outputs)
            to_update.append(row)
    DriftWindowHour.objects.bulk_update(to_update, ["predictions", "inputs", "outputs"])
    DriftWindowHour.objects.bulk_create(buckets.values())


# --- checks -----------------------------------------------------------------------------------------


def _reports(specs: dict[str, Spec], window: dict[str, list[int]], policy: DriftPolicy, *, is_output: bool) -> list:
    reports = []
    for name, spec in specs.items():
        current = window.get(name)
        # A feature the window rarely has (a sparse key) gives noise, not evidence.
        if not current or sum(current) < policy.min_window_predictions or not sum(spec["counts"]):
            continue
        common = {"feature": name, "is_output": is_output}
        value = psi(spec["counts"], current)
        reports.append(
            DriftReport(
                **common,
                method=DriftMethod.PSI,
                value=value,
                threshold=policy.psi_threshold,
                drifted=value > policy.psi_threshold,
            )
        )
        if spec["kind"] == NUMERIC:
            statistic, p_value = ks(spec["counts"], current)
            drifted = statistic > policy.ks_threshold and p_value < policy.p_value
            method, threshold = DriftMethod.KS, policy.ks_threshold
        else:
            statistic, p_value = chi_square(spec["counts"], current)
            drifted = p_value < policy.p_value
            method, threshold = DriftMethod.CHI2, None
        reports.append(
            DriftReport(**common, method=method, value=statistic, p_value=p_value, threshold=threshold, drifted=drifted)
        )
    return reports


def drift_check_version(*, reference: DriftReference, policy: DriftPolicy, now: datetime) -> DriftCheck | None:
    """Compare the version's last `window_hours` hours with its reference; None when the window is too small."""
    start = _hour(now) - timedelta(hours=policy.window_hours - 1)
    inputs: dict[str, list[int]] = {}
    outputs: dict[str, list[int]] = {}
    predictions = 0
    for hour in DriftWindowHour.objects.filter(model_version_id=reference.model_version_id, hour__range=(start, now)):
        predictions += hour.predictions
        merged(inputs, hour.inputs)
        merged(outputs, hour.outputs)
    if predictions < policy.min_window_predictions:
        return None
    reports = _reports(reference.inputs, inputs, policy, is_output=False)
    reports += _reports(reference.outputs, outputs, policy, is_output=True)
    with transaction.atomic():
        check = DriftCheck.objects.create(
            model_version_id=reference.model_version_id,
            window_start=start,
            window_end=now,
            window_predictions=predictions,
            reference_size=reference.sample_size,
            drifted=any(report.drifted for report in reports),
        )
        for report in reports:
            report.drift_check = check
        DriftReport.objects.bulk_create(reports)
        DriftReference.objects.filter(pk=reference.pk).update(last_check=check)
    return check


def drift_check_all(*, now: datetime | None = None, force: bool = False) -> list[DriftCheck]:
    """Check every version with a reference whose last check is older than CHECK_INTERVAL (all with `force`),
    then forget checks older than KEEP_CHECKS and window hours no window reaches any more."""
    now = now or timezone.now()
    policies = _policies()
    checks = []
    references = DriftReference.objects.select_related("model_version", "last_check").order_by("pk")
    for reference in references:
        policy = policies.get(reference.model_version.registered_model_id) or DriftPolicy()
        last = reference.last_check
        if not policy.enabled or (not force and last is not None and last.created_at > now - CHECK_INTERVAL):
            continue
        try:
            check = drift_check_version(reference=reference, policy=policy, now=now)
        except Exception:  # one version's trouble must not stop the others' checks
            logger.exception("Drift check of %s failed", reference.model_version)
            continue
        if check is not None:
            checks.append(check)
    DriftCheck.objects.filter(created_at__lt=now - KEEP_CHECKS).delete()
    DriftWindowHour.objects.filter(hour__lt=_oldest_window_hour(now, policies)).delete()
    return checks


def _oldest_window_hour(now: datetime, policies: dict[int, DriftPolicy]) -> datetime:
    """The first hour any policy's window still reaches; older window hours are of no use."""
    longest = max([24, *(policy.window_hours for policy in policies.values())])
    return _hour(now) - timedelta(hours=longest)


def drift_window_recount(*, model_version: ModelVersion) -> int:
    """Recount a version's hourly windows from its stored predictions up to the watermark (after rows were
    loaded around the services, or to verify the incremental counts), over the hours a window can still reach;
    returns the number of predictions counted."""
    reference = DriftReference.objects.filter(model_version=model_version).first()
    if reference is None:
        return 0
    _watermark()
    with transaction.atomic():
        # Holds off the counting task, which moves the watermark past what this recount reads.
        through = DriftWatermark.objects.select_for_update().get(pk=1).last_prediction_id
        DriftWindowHour.objects.filter(model_version=model_version).delete()
        rows = Prediction.objects.filter(
            model_version=model_version,
            pk__gt=reference.through_prediction_id,
            pk__lte=through,
            created_at__gte=_oldest_window_hour(timezone.now(), _policies()),
        ).order_by("pk")
        counted = 0
        chunk: list[tuple] = []
        for row in rows.values_list(*ROW_FIELDS).iterator(chunk_size=CHUNK):
            chunk.append(row)
            if len(chunk) == CHUNK:
                _add_to_windows(chunk)
                counted, chunk = counted + len(chunk), []
        if chunk:
            _add_to_windows(chunk)
    return counted + len(chunk)
