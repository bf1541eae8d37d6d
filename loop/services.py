"""Writes of the improvement loop: labelled examples, training runs, promotion, rollback, champion predictions."""

import logging
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from collector.drift import drift_reference_record
from collector.labels import LabelError, label_for, numeric_value
from collector.models import IngestSource, ModelVersion, Prediction, RegisteredModel, TaskType
from collector.selectors import current_drift_check, drifted_features, quality_list
from collector.services import Actor, PredictionIn, prediction_record_batch
from feedbackhub.errors import Conflict, FieldProblem, Forbidden, InvalidInput
from loop.artifacts import artifact_load, artifact_save, dataset_hash
from loop.datasets import Dataset, dataset_reading
from loop.evaluation import baseline_predictions, improvement, score
from loop.models import (
    ACTIVE_RUN_STATUSES,
    LabelledExample,
    ModelArtifact,
    Promotion,
    RetrainPolicy,
    RunStatus,
    ThresholdChange,
    TrainingRun,
)
from loop.selectors import champion_training_run
from loop.trainers import Trainer, trainer_from_spec, training_blas_threads

logger = logging.getLogger(__name__)
# Small, so seed 001's five examples retrain; the holdout comparison still decides whether a tiny model is promoted.
MIN_TRAIN_EXAMPLES = 2
DRIFT_REFERENCE_SAMPLES = 5000
_SIDE_PREDICTION_ROWS = 20_000


def retrain_policy_for(registered_model: RegisteredModel) -> RetrainPolicy:
    policy, _ = RetrainPolicy.objects.get_or_create(registered_model=registered_model)
    return policy


def _metric(policy: RetrainPolicy) -> str:
    if policy.metric:
        return policy.metric
    return "mae" if policy.registered_model.task_type == TaskType.REGRESSION else "accuracy"


def _canonical_target(task_type: str, value: Any) -> Any:
    return numeric_value(value) if task_type == TaskType.REGRESSION else label_for(task_type, value)


# --- labelled examples ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExampleIn:
    input: Any
    target: Any


def examples_record(
    *, registered_model: RegisteredModel, items: Sequence[ExampleIn], actor: Actor, single: bool = False
) -> list[int]:
    """Store training examples (seed 001's format); all or nothing, masked like every other write."""
    if not actor.may_write(registered_model.pk):
        message = f"this API key may not write to model '{registered_model.name}'"
        raise Forbidden(message, [FieldProblem("name", message)])
    if registered_model.task_type == TaskType.GENERATIVE:
        message = f"model '{registered_model.name}' is generative; only classification and regression models train here"
        raise InvalidInput(message, [FieldProblem("target", message)])
    problems = []
    for index, item in enumerate(items):
        try:
            _canonical_target(registered_model.task_type, item.target)
        except LabelError as error:
            field = "target" if single else f"[{index}].target"
            problems.append(
                FieldProblem(field, f"{error} (model '{registered_model.name}' is {registered_model.task_type})")
            )
    if problems:
        raise InvalidInput(f"{problems[0].field}: {problems[0].message}", problems)
    policy = registered_model.redaction_policy()
    rows = LabelledExample.objects.bulk_create(
        LabelledExample(
            registered_model=registered_model,
            input=policy.value(item.input, "input"),
            target=item.target,
            actor=actor.label,
        )
        for item in items
    )
    transaction.on_commit(lambda: retrain_if_due(registered_model=registered_model))
    return [row.pk for row in rows]


def labelled_since(*, registered_model: RegisteredModel, since: datetime | None) -> int:
    """New labelled examples since `since`: outcomes, approved label corrections and direct examples."""
    predictions = Prediction.objects.filter(registered_model=registered_model)
    examples = LabelledExample.objects.filter(registered_model=registered_model)
    # Every outcome and approved label is stamped when it is written, and each stamp has a partial index: two
    # counts that each read one index, where one count over an OR would read all of the model's predictions.
    if since is None:
        outcomes = predictions.filter(actual_recorded_at__isnull=False)
        labels_only = predictions.filter(training_label_at__isnull=False, actual_recorded_at__isnull=True)
        return outcomes.count() + labels_only.count() + examples.count()
    outcomes = predictions.filter(actual_recorded_at__gt=since)
    labels_only = predictions.filter(training_label_at__gt=since).exclude(actual_recorded_at__gt=since)
    return outcomes.count() + labels_only.count() + examples.filter(created_at__gt=since).count()


# --- requesting runs --------------------------------------------------------------------------------


def retrain_request(
    *, registered_model: RegisteredModel, trigger: str, dispatch: bool = True
) -> tuple[TrainingRun, bool]:
    """Queue a run, or return the one already queued or running (duplicate triggers coalesce).

    With dispatch=False the caller runs it itself (the `retrain` command)."""
    try:
        with transaction.atomic():
            run = TrainingRun.objects.create(registered_model=registered_model, trigger=trigger)
    except IntegrityError:  # one_active_run_per_model: a run is already queued or running
        active = TrainingRun.objects.filter(registered_model=registered_model, status__in=ACTIVE_RUN_STATUSES).first()
        if active is None:  # it finished in between: try once more
            return retrain_request(registered_model=registered_model, trigger=trigger, dispatch=dispatch)
        return active, False
    if dispatch:
        transaction.on_commit(lambda: _dispatch(run))
    return run, True


def _dispatch(run: TrainingRun) -> None:
    """Send the run's task. With the broker down the run stays queued, marked, and the beat's next retrain check
    sends it again: the trigger is neither lost nor blocking (the publish gives up within about a second)."""
    from loop.tasks import retrain

    try:
        retrain.delay(run.pk)
    except Exception as error:  # noqa: BLE001 - kombu raises its own and the transport's errors
        logger.warning("Training run %s is queued but the Celery broker is unreachable: %s", run.pk, error)
        run.dispatch_error = f"could not reach the Celery broker ({error}); the next retrain check sends it again"
        TrainingRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(dispatch_error=run.dispatch_error)
        return
    run.dispatched_at, run.dispatch_error = timezone.now(), ""  # the caller's copy answers the API with it
    TrainingRun.objects.filter(pk=run.pk).update(dispatched_at=run.dispatched_at, dispatch_error="")


def training_runs_dispatch_undelivered() -> int:
    """Send again the queued runs whose task could not reach the broker."""
    undelivered = list(TrainingRun.objects.filter(status=RunStatus.QUEUED).exclude(dispatch_error=""))
    for run in undelivered:
        _dispatch(run)
    return len(undelivered)


def _last_run_start(registered_model: RegisteredModel) -> datetime | None:
    """When the model's last run started. A run whose worker died does not count, so its trigger fires again, but
    only once: when the run before it was lost too (out of memory, past the time limit), it waits for new data."""
    runs = list(
        TrainingRun.objects.filter(registered_model=registered_model, started_at__isnull=False)
        .order_by("-started_at")
        .values_list("started_at", "worker_lost")[:2]
    )
    if not runs:
        return None
    (last_start, last_lost), *earlier = runs
    if last_lost and not (earlier and earlier[0][1]):
        return earlier[0][0] if earlier else None
    return last_start


def _schedule_due(policy: RetrainPolicy, last_start: datetime | None) -> bool:
    if policy.schedule is None:
        return False
    if last_start is None:
        return True
    is_due, _ = policy.schedule.schedule.is_due(last_start)
    return bool(is_due)


def retrain_if_due(*, registered_model: RegisteredModel) -> TrainingRun | None:
    policy = retrain_policy_for(registered_model)
    if not policy.enabled or registered_model.task_type == TaskType.GENERATIVE:
        return None
    last_start = _last_run_start(registered_model)
    if _schedule_due(policy, last_start):
        trigger = "schedule"
    elif labelled_since(registered_model=registered_model, since=last_start) >= policy.min_new_examples:
        trigger = "threshold"
    else:
        return None
    run, _ = retrain_request(registered_model=registered_model, trigger=trigger)
    return run


# --- automatic threshold adjustment -----------------------------------------------------------------

STALLED_RUNS = 3
QUALITY_DROP = 0.05
QUALITY_WINDOW_MIN_OUTCOMES = 20


def _change_threshold(policy: RetrainPolicy, *, factor: float, reason: str) -> ThresholdChange | None:
    new = min(policy.max_threshold, max(policy.min_threshold, round(policy.min_new_examples * factor)))
    if (new - policy.min_new_examples) * (factor - 1) <= 0:  # no change, or a change the wrong way
        return None
    change = ThresholdChange.objects.create(
        policy=policy, old_threshold=policy.min_new_examples, new_threshold=new, reason=reason
    )
    policy.min_new_examples = new
    policy.save(update_fields=["min_new_examples"])
    return change


def threshold_adjust_after_run(*, registered_model: RegisteredModel) -> ThresholdChange | None:
    """Raise the threshold when the last few retrains did not beat the champion: wait for more data."""
    policy = retrain_policy_for(registered_model)
    if not policy.adaptive_threshold:
        return None
    runs = TrainingRun.objects.filter(registered_model=registered_model, status=RunStatus.SUCCEEDED)
    last_change = policy.threshold_changes.first()
    if last_change is not None:  # each raise needs as many fresh runs
        runs = runs.filter(finished_at__gt=last_change.created_at)
    recent = list(runs.order_by("-finished_at").values_list("promoted", flat=True)[:STALLED_RUNS])
    if len(recent) < STALLED_RUNS or any(recent):
        return None
    reason = f"the last {STALLED_RUNS} retrains did not beat the champion: wait for more new examples"
    return _change_threshold(policy, factor=1.5, reason=reason)


def threshold_adjust_for_quality(*, registered_model: RegisteredModel) -> ThresholdChange | None:
    """Lower the threshold when the champion's last hour is clearly worse than at its promotion (at most hourly)."""
    policy = retrain_policy_for(registered_model)
    run = champion_training_run(registered_model)
    if not policy.adaptive_threshold or run is None or run.candidate_score is None or _changed_lately(policy):
        return None
    qualities = quality_list(registered_model=registered_model, version=run.candidate_version.version)
    window = qualities[0].windows.get("last_1h") if qualities else None
    if window is None or window.outcomes < QUALITY_WINDOW_MIN_OUTCOMES:
        return None
    if (
        run.metric == "accuracy"
        and window.accuracy is not None
        and window.accuracy < run.candidate_score - QUALITY_DROP
    ):
        live, measured = window.accuracy, run.candidate_score
    elif run.metric == "mae" and window.mae is not None and window.mae > run.candidate_score * (1 + QUALITY_DROP * 5):
        live, measured = window.mae, run.candidate_score
    else:
        return None
    reason = f"live {run.metric} over the last hour is {live:.3f}, against {measured:.3f} at promotion: retrain sooner"
    return _change_threshold(policy, factor=0.5, reason=reason)


def threshold_adjust_for_drift(*, registered_model: RegisteredModel) -> ThresholdChange | None:
    """Lower the threshold when the current drift check (of the champion, else of the version checked last) found
    drifted inputs or outputs: the model should see the new data sooner. At most hourly, and once per check."""
    policy = retrain_policy_for(registered_model)
    if not policy.adaptive_threshold or _changed_lately(policy):
        return None
    champion = current_champion(registered_model)
    check = current_drift_check(registered_model=registered_model, version=champion.version if champion else None)
    drifted = drifted_features(drift_check=check)
    if not drifted or policy.threshold_changes.filter(created_at__gte=check.created_at).exists():
        return None
    names = sorted({report.feature for report in drifted})
    listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return _change_threshold(policy, factor=0.5, reason=f"drift in {listed}: retrain sooner")


def _changed_lately(policy: RetrainPolicy) -> bool:
    return policy.threshold_changes.filter(created_at__gt=timezone.now() - timedelta(hours=1)).exists()


def training_runs_fail_stale() -> int:
    """Runs whose worker died stay "running", and runs no worker picked up stay "queued"; either would block
    the model's next run: mark them failed."""
    now = timezone.now()
    died = TrainingRun.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=_stale_before()).update(
        status=RunStatus.FAILED,
        error="the worker stopped without finishing (killed or lost): its heartbeat went silent",
        worker_lost=True,
        finished_at=now,
    )
    # A queue may legitimately wait behind other models' runs, each bounded by the task time limit.
    queue_given_up = now - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 60)
    # A run the broker has not accepted yet is sent again by each check instead (see _dispatch).
    never_started = TrainingRun.objects.filter(
        Q(dispatched_at__lt=queue_given_up) | Q(dispatched_at__isnull=True, created_at__lt=queue_given_up),
        status=RunStatus.QUEUED,
        dispatch_error="",
    ).update(
        status=RunStatus.FAILED, error="no worker picked the run up (is a Celery worker running?)", finished_at=now
    )
    return died + never_started


def retrain_due_models() -> list[TrainingRun]:
    """Beat: fail runs whose worker died, send again the runs the broker did not take, then queue a run for every
    model with enough new labelled examples."""
    training_runs_fail_stale()
    training_runs_dispatch_undelivered()
    runs = []
    for model in RegisteredModel.objects.exclude(task_type=TaskType.GENERATIVE).order_by("pk"):
        try:
            threshold_adjust_for_quality(registered_model=model)
            threshold_adjust_for_drift(registered_model=model)
            run = retrain_if_due(registered_model=model)
        except Exception:  # one model's trouble must not stop the others' retraining
            logger.exception("Retrain check of model %s failed", model.name)
            continue
        if run is not None:
            runs.append(run)
    return runs


# --- running ----------------------------------------------------------------------------------------


def _stale_before() -> datetime:
    return timezone.now() - timedelta(seconds=settings.FEEDBACKHUB_RUN_STALE_SECONDS)


def _claim(run_id: int) -> bool:
    now = timezone.now()
    claimable = Q(status=RunStatus.QUEUED) | Q(status=RunStatus.RUNNING, heartbeat_at__lt=_stale_before())
    claimed = TrainingRun.objects.filter(claimable, pk=run_id).update(
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now
    )
    return claimed == 1  # 0: another worker runs it, or it already finished


@contextmanager
def _heartbeat(run: TrainingRun) -> Iterator[None]:
    """Refresh the run's heartbeat from a side thread while it works, so a long fit is not taken for a dead
    worker, and a worker that is killed stops beating at once."""
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.FEEDBACKHUB_RUN_HEARTBEAT_SECONDS):
                try:
                    TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING, started_at=run.started_at).update(
                        heartbeat_at=timezone.now()
                    )
                except DatabaseError:  # the next beat tries again; four misses in a row fail the run
                    logger.warning("Could not record the heartbeat of training run %s", run.pk, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"training-run-{run.pk}-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def current_champion(registered_model: RegisteredModel) -> ModelVersion | None:
    latest = Promotion.objects.filter(registered_model=registered_model).select_related("model_version").first()
    return latest.model_version if latest else None


def training_run_execute(*, run_id: int) -> TrainingRun | None:
    """Train, evaluate on the newest holdout, and promote only a better model. None when not claimed."""
    if not _claim(run_id):
        return None
    run = TrainingRun.objects.select_related("registered_model").get(pk=run_id)
    started = time.monotonic()
    try:
        with _heartbeat(run):
            _train_evaluate_promote(run)
    except _RunLost:
        logger.warning("Training run %s was failed as stale while it still ran; its result is dropped", run.pk)
    except Exception as error:
        logger.exception("Training run %s failed", run.pk)
        TrainingRun.objects.filter(pk=run.pk).update(
            status=RunStatus.FAILED,
            error=f"{type(error).__name__}: {error}",
            finished_at=timezone.now(),
            duration_seconds=time.monotonic() - started,
        )
    else:
        TrainingRun.objects.filter(pk=run.pk).update(duration_seconds=time.monotonic() - started)
        threshold_adjust_after_run(registered_model=run.registered_model)
    run.refresh_from_db()
    return run


class _RunLost(Exception):
    """The run was failed by the stale-run check while this process still worked on it."""


def _train_evaluate_promote(run: TrainingRun) -> None:
    model = run.registered_model
    policy = retrain_policy_for(model)
    task_type = model.task_type
    trainer = trainer_from_spec(spec=policy.trainer_spec, task_type=task_type)  # a bad spec fails before reading
    with dataset_reading(registered_model=model) as dataset:
        train, holdout = dataset.split(holdout_count=max(1, int(len(dataset) * policy.holdout_share)))
        if len(train) < MIN_TRAIN_EXAMPLES:
            raise ValueError(
                f"only {len(dataset)} usable labelled examples; at least {MIN_TRAIN_EXAMPLES + 1} are needed"
            )
        champion = current_champion(model)
        fitted = _fit(run, trainer, train=train, holdout=holdout, champion=_artifact_of(champion))
    candidate_predictions = fitted.candidate_predictions
    metric = _metric(policy)
    candidate_score = score(
        task_type=task_type, metric=metric, targets=holdout.targets, predictions=candidate_predictions
    )
    rival_name, rival, needed = _rival(
        champion, fitted.champion_predictions, task_type, train.targets, policy, count=len(holdout)
    )
    rival_score = score(task_type=task_type, metric=metric, targets=holdout.targets, predictions=rival)
    promote = improvement(metric=metric, candidate=candidate_score, champion=rival_score) > needed
    decision = (
        f"{metric} {candidate_score:.4f} against {rival_name}'s {rival_score:.4f} on {len(holdout)} held-out examples: "
        + ("promoted" if promote else f"kept the champion (needs an improvement above {needed})")
        + (f"; {dataset.skipped} labelled examples skipped (input or target does not fit)" if dataset.skipped else "")
    )
    # A client cannot guess this name, so it cannot take it first with a prediction of its own.
    version_name = f"hub-{run.pk}-{secrets.token_hex(3)}"
    artifact = artifact_save(trainer=trainer, directory=_artifact_dir(model), name=version_name)
    try:
        with transaction.atomic():
            RegisteredModel.objects.select_for_update().get(pk=model.pk)  # serialises with rollbacks
            if not TrainingRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING, started_at=run.started_at).exists():
                raise _RunLost
            if promote and current_champion(model) != champion:
                promote = False
                decision += "; not promoted: the champion changed during the run (a rollback?)"
            version = ModelVersion.objects.create(registered_model=model, version=version_name)
            ModelArtifact.objects.create(
                model_version=version,
                training_run=run,
                path=str(artifact.path),
                sha256=artifact.sha256,
                size=artifact.size,
                trainer_spec=policy.trainer_spec,
                description=trainer.describe(),
                metrics={metric: candidate_score, f"{metric}_rival": rival_score},
            )
            if promote:
                Promotion.objects.create(
                    registered_model=model, model_version=version, previous_version=champion, kind="promotion",
                    reason=decision, actor=f"run:{run.pk}",
                )  # fmt: skip
            TrainingRun.objects.filter(pk=run.pk).update(
                status=RunStatus.SUCCEEDED,
                finished_at=timezone.now(),
                train_count=len(train),
                holdout_count=len(holdout),
                dataset_sha256=fitted.dataset_sha256,
                metric=metric,
                candidate_score=candidate_score,
                champion_score=rival_score,
                promoted=promote,
                candidate_version=version,
                decision=decision,
            )
    except BaseException:
        artifact.path.unlink(missing_ok=True)  # no row points at it
        raise
    if promote:
        _drift_reference_from_training(version, trainer, train=train, holdout=holdout)


@dataclass(frozen=True)
class _Fitted:
    candidate_predictions: list
    champion_predictions: list | None  # None: no champion, or one that cannot be scored
    dataset_sha256: str


def _fit(
    run: TrainingRun, trainer: Trainer, *, train: Dataset, holdout: Dataset, champion: ModelArtifact | None
) -> _Fitted:
    """Fit the candidate and predict the holdout with it. The dataset hash and the champion's predictions are made
    on the side meanwhile: both leave the GIL free for most of their work, and the fit keeps to
    FEEDBACKHUB_TRAINING_BLAS_THREADS, leaving them a core. The side thread touches no database."""
    with training_blas_threads(), ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"run-{run.pk}") as side:
        train_hash = side.submit(dataset_hash, ids=train.ids, inputs=train.inputs, targets=train.targets)
        task_type = run.registered_model.task_type
        champion_predictions = side.submit(_artifact_predictions, champion, task_type, holdout.inputs)
        trainer.fit(train.inputs, train.targets)
        return _Fitted(trainer.predict(holdout.inputs), champion_predictions.result(), train_hash.result())


def _drift_reference_from_training(
    version: ModelVersion, trainer: Trainer, *, train: Dataset, holdout: Dataset
) -> None:
    """The new champion's drift reference: a sample of its training inputs, and its own outputs on a sample of the
    holdout. After the promotion's commit: a failure here leaves the champion, and the version falls back to a
    reference from its first predictions."""
    try:
        sample = _evenly_spaced(holdout.inputs, DRIFT_REFERENCE_SAMPLES)
        probabilities = trainer.predict_proba(sample)
        drift_reference_record(
            model_version=version,
            inputs=_evenly_spaced(train.inputs, DRIFT_REFERENCE_SAMPLES),
            predictions=trainer.predict(sample),
            confidences=[max(row.values()) for row in probabilities] if probabilities else [],
        )
    except Exception:  # noqa: BLE001 - drift is a side output of the run, never a reason to fail it
        logger.exception("Could not record the drift reference of %s", version)


def _evenly_spaced(inputs: np.ndarray | list[Any], limit: int) -> list[Any]:
    """At most `limit` inputs spread over the whole (time-ordered) set, as JSON values."""
    positions = np.linspace(0, len(inputs) - 1, num=min(limit, len(inputs)), dtype=int) if len(inputs) else []
    if isinstance(inputs, np.ndarray):
        return inputs[positions].tolist()
    return [inputs[position] for position in positions]


def _artifact_of(version: ModelVersion | None) -> ModelArtifact | None:
    return None if version is None else ModelArtifact.objects.filter(model_version=version).first()


def _artifact_predictions(artifact: ModelArtifact | None, task_type: str, inputs: np.ndarray | list) -> list | None:
    """The saved model's predictions for `inputs`; None when there is no artifact (a champion trained elsewhere: the
    hub only knows its predictions), or when it cannot load or cannot read inputs whose form has changed since."""
    if artifact is None:
        return None
    try:
        trainer = _artifact_trainer(artifact, task_type)
        # In slices: this runs beside the fit, whose own peak of memory it should add little to.
        return [
            prediction
            for first in range(0, len(inputs), _SIDE_PREDICTION_ROWS)
            for prediction in trainer.predict(inputs[first : first + _SIDE_PREDICTION_ROWS])
        ]
    except Exception as error:  # noqa: BLE001 - a champion that cannot compete must not block every future run
        version_id = artifact.model_version_id
        logger.warning("The champion (version id %s) cannot be scored on the holdout: %s", version_id, error)
        return None


def _rival(
    champion: ModelVersion | None,
    champion_predictions: list | None,
    task_type: str,
    train_targets: np.ndarray,
    policy: RetrainPolicy,
    *,
    count: int,
) -> tuple[str, list, float]:
    """What the candidate must beat: the champion's predictions on the same holdout, else a baseline."""
    if champion is not None and champion_predictions is not None:
        return f"champion {champion.version}", champion_predictions, policy.min_improvement
    baseline = baseline_predictions(task_type=task_type, train_targets=train_targets, count=count)
    return "the trivial baseline", baseline, 0.0


def _artifact_dir(model: RegisteredModel) -> Path:
    directory = Path(settings.VAR_DIR) / "artifacts" / model.name
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _trainer_of(version: ModelVersion, task_type: str) -> Trainer | None:
    artifact = _artifact_of(version)
    return None if artifact is None else _artifact_trainer(artifact, task_type)


def _artifact_trainer(artifact: ModelArtifact, task_type: str) -> Trainer:
    return artifact_load(
        path=Path(artifact.path), sha256=artifact.sha256, spec=artifact.trainer_spec, task_type=task_type
    )


# --- rollback and predictions -----------------------------------------------------------------------


def champion_rollback(*, registered_model: RegisteredModel, actor: str) -> Promotion:
    """Make the previous champion the champion again, in one step."""
    with transaction.atomic():
        RegisteredModel.objects.select_for_update().get(pk=registered_model.pk)
        latest = Promotion.objects.filter(registered_model=registered_model).first()
        if latest is None or latest.previous_version is None:
            message = f"model '{registered_model.name}' has no previous champion to roll back to"
            raise Conflict(message, [FieldProblem("name", message)])
        return Promotion.objects.create(
            registered_model=registered_model,
            model_version=latest.previous_version,
            previous_version=latest.model_version,
            kind="rollback",
            reason=f"rolled back from {latest.model_version.version}",
            actor=actor,
        )


_champions: dict[int, tuple[int, Trainer]] = {}
_champions_lock = threading.Lock()


def _champion_trainer(registered_model: RegisteredModel) -> tuple[ModelVersion, Trainer]:
    """The champion's trainer, loaded once per process and reloaded when the champion changes."""
    version = current_champion(registered_model)
    trainer = _trainer_of(version, registered_model.task_type) if version else None
    if version is None or trainer is None:
        message = f"model '{registered_model.name}' has no champion trained by the hub yet: retrain it first"
        raise Conflict(message, [FieldProblem("name", message)])
    return version, trainer


def champion_predict(*, registered_model: RegisteredModel, inputs: Sequence[Any], actor: Actor) -> list[dict[str, Any]]:
    version = current_champion(registered_model)
    with _champions_lock:
        cached = _champions.get(registered_model.pk)
        if cached is None or version is None or cached[0] != version.pk:
            version, trainer = _champion_trainer(registered_model)
            _champions[registered_model.pk] = (version.pk, trainer)
        trainer = _champions[registered_model.pk][1]
    try:
        predictions = trainer.predict(list(inputs))
        probabilities = trainer.predict_proba(list(inputs)) or [None] * len(predictions)
    except (ValueError, TypeError, OverflowError) as error:
        message = f"the champion {version.version} cannot use this input: {error}"
        raise InvalidInput(f"input: {message}", [FieldProblem("input", message)]) from None
    items = [
        PredictionIn(
            model=registered_model.name,
            version=version.version,
            input=given,
            prediction=predicted,
            confidence=max(proba.values()) if proba else None,
            attributes={"probabilities": proba} if proba else {},
        )
        for given, predicted, proba in zip(inputs, predictions, probabilities, strict=True)
    ]
    recorded = prediction_record_batch(items=items, actor=actor, source=IngestSource.PREDICT)
    return [
        {
            "id": row.id,
            "event_id": row.event_id,
            "prediction": item.prediction,
            "confidence": item.confidence,
            "version": version.version,
        }
        for row, item in zip(recorded, items, strict=True)
    ]
