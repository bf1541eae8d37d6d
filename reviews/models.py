"""Human review: tasks opened by negative feedback, reviewers' corrections, and what corrections update."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from collector.models import Feedback, FeedbackKind, Prediction, RegisteredModel


class ReviewPolicy(models.Model):
    """When negative feedback opens a review task, per registered model (defaults follow the seed's rule)."""

    registered_model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, related_name="review_policy")
    window = models.PositiveIntegerField(default=10, help_text="How many similar recent feedback items to look at.")
    negative_rate = models.FloatField(default=0.3, help_text="Open a task when the negative share is above this.")
    negative_kinds = models.JSONField(
        default=list, blank=True, help_text='Kinds that count as negative; empty: ["thumbs_down", "correction"].'
    )
    negative_rating_max = models.PositiveSmallIntegerField(default=2, help_text="A rating at or below is negative.")
    high_priority_related = models.PositiveIntegerField(
        default=5, help_text="Priority is high when more related items than this."
    )
    similarity_threshold = models.FloatField(default=0.3, help_text="TF-IDF cosine above which texts are similar.")
    candidate_limit = models.PositiveIntegerField(
        default=200, help_text="How many recent feedback items similarity is searched in (bounds the cost)."
    )

    class Meta:
        verbose_name_plural = "review policies"

    def __str__(self) -> str:
        return f"review policy of {self.registered_model}"

    def counts_as_negative(self, feedback: Feedback) -> bool:
        kinds = self.negative_kinds or [FeedbackKind.THUMBS_DOWN, FeedbackKind.CORRECTION]
        if feedback.kind == FeedbackKind.RATING:
            return isinstance(feedback.value, int) and feedback.value <= self.negative_rating_max
        return feedback.kind in kinds


class Priority(models.TextChoices):
    HIGH = "high", "High"
    MEDIUM = "medium", "Medium"
    LOW = "low", "Low"


PRIORITY_RANK = {Priority.HIGH: 0, Priority.MEDIUM: 1, Priority.LOW: 2}


class TaskStatus(models.TextChoices):
    OPEN = "open", "Open"
    IN_PROGRESS = "in_progress", "In progress"
    RESOLVED = "resolved", "Resolved"
    DISMISSED = "dismissed", "Dismissed"


ACTIVE_STATUSES = [TaskStatus.OPEN, TaskStatus.IN_PROGRESS]


class ReviewTask(models.Model):
    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="review_tasks")
    pattern_key = models.CharField(max_length=255, help_text="What the related feedback has in common.")
    trigger_feedback = models.ForeignKey(
        Feedback, null=True, blank=True, on_delete=models.SET_NULL, related_name="triggered_tasks"
    )
    related_feedback = models.ManyToManyField(Feedback, blank=True, related_name="review_tasks")
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.MEDIUM)
    priority_rank = models.PositiveSmallIntegerField(default=1, editable=False)
    status = models.CharField(max_length=20, choices=TaskStatus.choices, default=TaskStatus.OPEN)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="review_tasks"
    )
    suggested_action = models.CharField(max_length=255)
    negative_rate = models.FloatField(default=0.0, help_text="Negative share of the related feedback at the trigger.")
    resolution_note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["priority_rank", "created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["registered_model", "pattern_key"],
                condition=Q(status__in=ACTIVE_STATUSES),
                name="one_active_task_per_pattern",
            ),
        ]
        indexes = [models.Index(fields=["status", "priority_rank", "created_at"], name="review_task_queue")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.registered_model}: {self.suggested_action}"


class ReviewEvent(models.Model):
    """One change of a task: who, when, what. Shown as the task's history."""

    task = models.ForeignKey(ReviewTask, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    actor_label = models.CharField(max_length=150)
    action = models.CharField(max_length=50)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.actor_label} {self.action}"


class CorrectionKind(models.TextChoices):
    LABEL = "label", "Label (the right output for a prediction)"
    KNOWLEDGE = "knowledge", "Knowledge (a fact the model should know)"
    BEHAVIOUR = "behaviour", "Behaviour (how the model should act)"


class CorrectionStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    APPROVED = "approved", "Approved"
    APPLIED = "applied", "Applied"
    REJECTED = "rejected", "Rejected"


class Correction(models.Model):
    task = models.ForeignKey(ReviewTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="corrections")
    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="corrections")
    prediction = models.ForeignKey(
        Prediction, null=True, blank=True, on_delete=models.SET_NULL, related_name="corrections"
    )
    kind = models.CharField(max_length=20, choices=CorrectionKind.choices)
    topic = models.CharField(
        max_length=200, blank=True, help_text="Knowledge corrections: the entry's topic (a new topic is created)."
    )
    value = models.JSONField(help_text="Label: the right output. Knowledge and behaviour: the new text.")
    note = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=CorrectionStatus.choices, default=CorrectionStatus.PROPOSED)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.kind} correction ({self.status})"


class KnowledgeEntry(models.Model):
    """One version of a knowledge-base entry; the highest version of a topic is the current one."""

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="knowledge")
    topic = models.CharField(max_length=200)
    version = models.PositiveIntegerField()
    content = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    source_correction = models.ForeignKey(Correction, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["registered_model", "topic", "-version"]
        verbose_name_plural = "knowledge entries"
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "topic", "version"], name="knowledge_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.topic} v{self.version}"


class Instruction(models.Model):
    """One version of a model's instructions (its prompt); exactly one version is active."""

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="instructions")
    version = models.PositiveIntegerField()
    content = models.TextField()
    is_active = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    source_correction = models.ForeignKey(Correction, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["registered_model", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "version"], name="instruction_version_unique"),
            models.UniqueConstraint(
                fields=["registered_model"], condition=Q(is_active=True), name="one_active_instruction"
            ),
        ]

    def __str__(self) -> str:
        return f"instructions v{self.version}" + (" (active)" if self.is_active else "")
