"""Writes of the review app: the trigger rule, the task workflow, and corrections and what they update."""

from collections.abc import Sequence
from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from collector.labels import LabelError, label_for
from collector.models import DriftCheck, Feedback, FeedbackKind, Prediction, RegisteredModel
from collector.redaction import bounded
from collector.services import lock_events
from feedbackhub.errors import Conflict, FieldProblem, InvalidInput
from reviews.models import (
    ACTIVE_STATUSES,
    PRIORITY_RANK,
    Correction,
    CorrectionKind,
    CorrectionStatus,
    Instruction,
    KnowledgeEntry,
    Priority,
    ReviewEvent,
    ReviewPolicy,
    ReviewTask,
    TaskStatus,
)
from reviews.similarity import similar_feedback

V = TypeVar("V", KnowledgeEntry, Instruction)
SUGGEST_KNOWLEDGE = "update knowledge base with corrections"
SUGGEST_INSTRUCTIONS = "review and update prompt/instructions"
SUGGEST_DRIFT = "inputs or outputs drifted from the reference: check the data feeding the model, then retrain"


def review_policy_for(registered_model: RegisteredModel) -> ReviewPolicy:
    policy, _ = ReviewPolicy.objects.get_or_create(registered_model=registered_model)
    return policy


def _event(task: ReviewTask, action: str, *, user: AbstractBaseUser | None = None, detail: str = "") -> None:
    label = user.get_username() if user is not None else "system"
    ReviewEvent.objects.create(task=task, actor=user, actor_label=label, action=action, detail=detail)


# --- the trigger rule -------------------------------------------------------------------------------


def review_triggers_evaluate(*, feedback_ids: Sequence[int]) -> list[ReviewTask]:
    """Run the trigger rule for recorded feedback not yet in any task; returns the tasks opened or added to.

    Called for retries too: if an evaluation failed after the feedback was stored, the client's retry runs it.
    """
    rows = Feedback.objects.filter(pk__in=feedback_ids, review_tasks__isnull=True).select_related(
        "registered_model", "prediction"
    )
    tasks = [review_trigger_evaluate(feedback=row) for row in rows.order_by("pk")]
    return [task for task in tasks if task is not None]


def review_trigger_evaluate(*, feedback: Feedback) -> ReviewTask | None:
    """Seed 002's rule: among the last `window` feedback items similar to this negative one, a negative share
    above `negative_rate` opens a review task (or adds to the open one for the same pattern)."""
    policy = review_policy_for(feedback.registered_model)
    if not policy.counts_as_negative(feedback):
        return None
    similar = similar_feedback(feedback=feedback, policy=policy)
    negatives = sum(1 for item in similar.items if policy.counts_as_negative(item))
    rate = negatives / len(similar.items)
    if rate <= policy.negative_rate:
        return None
    priority = Priority.HIGH if len(similar.items) > policy.high_priority_related else Priority.MEDIUM
    has_corrections = any(item.kind == FeedbackKind.CORRECTION for item in similar.items)
    action = SUGGEST_KNOWLEDGE if has_corrections else SUGGEST_INSTRUCTIONS
    for _ in range(2):  # a second pass finds the task a concurrent request just opened
        try:
            with transaction.atomic():
                # Text patterns have no unique key for the database to guard: serialise per model instead.
                lock_events("review-trigger", [(feedback.registered_model_id, "")])
                return _open_or_extend(feedback, similar.pattern_key, similar.items, priority, action, rate)
        except IntegrityError:
            continue
    raise AssertionError("an active task for the pattern could neither be created nor found")


def _active_task_for(feedback: Feedback, pattern_key: str, related: Sequence[Feedback]) -> ReviewTask | None:
    active = ReviewTask.objects.select_for_update().filter(
        registered_model=feedback.registered_model, status__in=ACTIVE_STATUSES
    )
    task = active.filter(pattern_key=pattern_key).first()
    if task is None and not pattern_key.startswith("interaction:"):
        # A text pattern has no fixed key: it is the open task that already holds some of these items.
        task = active.filter(related_feedback__in=[item.pk for item in related]).order_by("pk").first()
    return task


def _open_or_extend(
    feedback: Feedback, pattern_key: str, related: Sequence[Feedback], priority: str, action: str, rate: float
) -> ReviewTask:
    task = _active_task_for(feedback, pattern_key, related)
    if task is None:
        task = ReviewTask.objects.create(
            registered_model=feedback.registered_model,
            pattern_key=pattern_key,
            trigger_feedback=feedback,
            priority=priority,
            priority_rank=PRIORITY_RANK[priority],
            suggested_action=action,
            negative_rate=rate,
        )
        task.related_feedback.add(*related)
        _event(task, "opened", detail=f"feedback {feedback.pk}: {rate:.0%} negative of {len(related)} similar items")
        return task
    task.related_feedback.add(*related)
    changes = []
    if PRIORITY_RANK[priority] < task.priority_rank:
        task.priority, task.priority_rank = priority, PRIORITY_RANK[priority]
        changes.append(f"priority raised to {priority}")
    if action == SUGGEST_KNOWLEDGE and task.suggested_action != action:
        task.suggested_action = action
        changes.append("corrections among the feedback")
    task.negative_rate = rate
    task.save(update_fields=["priority", "priority_rank", "suggested_action", "negative_rate", "updated_at"])
    _event(task, "feedback added", detail="; ".join([f"feedback {feedback.pk}", *changes]))
    return task


def review_task_open_for_drift(*, drift_check: DriftCheck) -> ReviewTask | None:
    """Open a review task for a model version that drifted; None when one is already open for that version."""
    version = drift_check.model_version
    drifted = sorted({report.feature for report in drift_check.reports.all() if report.drifted})
    try:
        with transaction.atomic():
            task = ReviewTask.objects.create(
                registered_model_id=version.registered_model_id,
                pattern_key=f"drift:{version.version}",
                priority=Priority.MEDIUM,
                priority_rank=PRIORITY_RANK[Priority.MEDIUM],
                suggested_action=SUGGEST_DRIFT,
            )
            detail = f"drift check {drift_check.pk} of version {version.version}: {', '.join(drifted)} drifted"
            _event(task, "opened", detail=detail)
    except IntegrityError:  # one_active_task_per_pattern: the version's drift task is still open
        return None
    return task


# --- the workflow -----------------------------------------------------------------------------------


@transaction.atomic
def review_task_claim(*, task: ReviewTask, user: AbstractBaseUser) -> bool:
    """Assign an unassigned active task to `user`; False when someone else got there first."""
    claimed = ReviewTask.objects.filter(pk=task.pk, assignee__isnull=True, status__in=ACTIVE_STATUSES).update(
        assignee=user, status=TaskStatus.IN_PROGRESS, updated_at=timezone.now()
    )
    if claimed != 1:  # another reviewer got there first, or the task is closed
        return False
    task.refresh_from_db()
    _event(task, "assigned", user=user, detail=f"to {user.get_username()}")
    return True


@transaction.atomic
def _close(task: ReviewTask, user: AbstractBaseUser, status: str, note: str) -> bool:
    note = task.registered_model.redaction_policy().text(note)
    now = timezone.now()
    fields: dict[str, Any] = {"status": status, "closed_at": now, "updated_at": now}
    if note:
        fields["resolution_note"] = note
    closed = ReviewTask.objects.filter(pk=task.pk, status__in=ACTIVE_STATUSES).update(**fields)
    if closed != 1:
        return False
    task.refresh_from_db()
    _event(task, status, user=user, detail=note)
    return True


def review_task_resolve(*, task: ReviewTask, user: AbstractBaseUser, note: str = "") -> bool:
    return _close(task, user, TaskStatus.RESOLVED, note)


def review_task_dismiss(*, task: ReviewTask, user: AbstractBaseUser, note: str = "") -> bool:
    return _close(task, user, TaskStatus.DISMISSED, note)


@transaction.atomic
def review_task_note(*, task: ReviewTask, user: AbstractBaseUser, note: str) -> None:
    note = task.registered_model.redaction_policy().text(note)
    ReviewTask.objects.filter(pk=task.pk).update(resolution_note=note, updated_at=timezone.now())
    _event(task, "note edited", user=user, detail=note)


# --- corrections ------------------------------------------------------------------------------------


def correction_propose(
    *,
    registered_model: RegisteredModel,
    kind: str,
    value: Any,
    author: AbstractBaseUser | None,
    task: ReviewTask | None = None,
    prediction: Prediction | None = None,
    topic: str = "",
    note: str = "",
) -> Correction:
    problems = []
    if kind == CorrectionKind.LABEL:
        if prediction is None:
            problems.append(FieldProblem("prediction", "a label correction names the prediction it corrects"))
        else:
            try:
                label_for(registered_model.task_type, value)
            except LabelError as error:
                problems.append(FieldProblem("value", f"{error} (model {registered_model.name})"))
    elif kind == CorrectionKind.KNOWLEDGE and not topic.strip():
        problems.append(FieldProblem("topic", "a knowledge correction names the entry's topic"))
    if problems:
        raise InvalidInput(f"{problems[0].field}: {problems[0].message}", problems)
    policy = registered_model.redaction_policy()
    correction = Correction.objects.create(
        task=task,
        registered_model=registered_model,
        prediction=prediction,
        kind=kind,
        topic=bounded(policy.text(topic.strip()), 200),
        value=policy.value(value, "value"),
        note=policy.text(note),
        author=author,
    )
    if task is not None:
        _event(task, "correction proposed", user=author, detail=f"{kind} correction {correction.pk}")
    return correction


def correction_approve(*, correction: Correction, user: AbstractBaseUser) -> Correction:
    """Approve a proposed correction and apply it: a training label, a knowledge version or an instruction version."""
    with transaction.atomic():
        now = timezone.now()
        approved = Correction.objects.filter(pk=correction.pk, status=CorrectionStatus.PROPOSED).update(
            status=CorrectionStatus.APPROVED, decided_by=user, decided_at=now
        )
        if approved != 1:
            message = f"correction {correction.pk} is no longer proposed"
            raise Conflict(message, [FieldProblem("status", message)])
        correction.refresh_from_db()
        _apply(correction, user, now)
        Correction.objects.filter(pk=correction.pk).update(status=CorrectionStatus.APPLIED)
        correction.refresh_from_db()
        if correction.task is not None:
            _event(
                correction.task, "correction applied", user=user, detail=f"{correction.kind} correction {correction.pk}"
            )
    return correction


def correction_reject(*, correction: Correction, user: AbstractBaseUser) -> bool:
    rejected = Correction.objects.filter(pk=correction.pk, status=CorrectionStatus.PROPOSED).update(
        status=CorrectionStatus.REJECTED, decided_by=user, decided_at=timezone.now()
    )
    if rejected == 1 and correction.task is not None:
        _event(correction.task, "correction rejected", user=user, detail=f"correction {correction.pk}")
    return rejected == 1


def _apply(correction: Correction, user: AbstractBaseUser, now: Any) -> None:
    if correction.kind == CorrectionKind.LABEL:
        # The outcome stays as it was (the audit record); training uses this label instead.
        Prediction.objects.filter(pk=correction.prediction_id).update(
            training_label=correction.value, training_label_at=now
        )
    elif correction.kind == CorrectionKind.KNOWLEDGE:
        knowledge_entry_add(
            registered_model=correction.registered_model,
            topic=correction.topic,
            content=_text(correction.value),
            user=user,
            source_correction=correction,
        )
    else:
        instruction_add(
            registered_model=correction.registered_model,
            content=_text(correction.value),
            user=user,
            source_correction=correction,
        )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _add_version(model_class: type[V], *, scope: dict[str, Any], **fields: Any) -> V:
    """Create the next version in `scope`; a concurrent writer taking the same number makes this try again."""
    for attempt in range(3):
        try:
            with transaction.atomic():
                latest = model_class.objects.filter(**scope).aggregate(latest=Max("version"))["latest"] or 0
                if model_class is Instruction:
                    model_class.objects.filter(**scope, is_active=True).update(is_active=False)
                return model_class.objects.create(**scope, version=latest + 1, **fields)
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def knowledge_entry_add(
    *,
    registered_model: RegisteredModel,
    topic: str,
    content: str,
    user: AbstractBaseUser | None,
    source_correction: Correction | None = None,
) -> KnowledgeEntry:
    """A new version of a topic's entry (version 1 for a new topic)."""
    return _add_version(
        KnowledgeEntry,
        scope={"registered_model": registered_model, "topic": topic},
        content=content,
        created_by=user,
        source_correction=source_correction,
    )


def knowledge_entry_restore(*, entry: KnowledgeEntry, user: AbstractBaseUser) -> KnowledgeEntry:
    """Make an earlier version current again, as a new version (history is never rewritten)."""
    return knowledge_entry_add(
        registered_model=entry.registered_model, topic=entry.topic, content=entry.content, user=user
    )


def instruction_add(
    *,
    registered_model: RegisteredModel,
    content: str,
    user: AbstractBaseUser | None,
    source_correction: Correction | None = None,
) -> Instruction:
    """A new version of the model's instructions, which becomes the active one."""
    return _add_version(
        Instruction,
        scope={"registered_model": registered_model},
        content=content,
        is_active=True,
        created_by=user,
        source_correction=source_correction,
    )


def instruction_restore(*, instruction: Instruction, user: AbstractBaseUser) -> Instruction:
    return instruction_add(registered_model=instruction.registered_model, content=instruction.content, user=user)
