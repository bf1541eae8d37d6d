"""The improvement loop: retrain policies, labelled examples, training runs, artifacts and promotions."""

from django.db import models
from django.db.models import Q

from collector.models import ModelVersion, RegisteredModel


class Metric(models.TextChoices):
    ACCURACY = "accuracy", "Accuracy"
    F1 = "f1", "F1"
    PRECISION = "precision", "Precision"
    RECALL = "recall", "Recall"
    MAE = "mae", "Mean absolute error"
    RMSE = "rmse", "Root mean squared error"


class RetrainPolicy(models.Model):
    registered_model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, related_name="retrain_policy")
    enabled = models.BooleanField(default=True)
    min_new_examples = models.PositiveIntegerField(
        default=100, help_text="Retrain once this many new labelled examples arrived since the last run."
    )
    holdout_share = models.FloatField(
        default=0.2, help_text="Share of the newest labelled examples kept for evaluation, never trained on."
    )
    metric = models.CharField(
        max_length=20, choices=Metric.choices, blank=True, help_text="Empty: accuracy, or MAE for regression."
    )
    min_improvement = models.FloatField(
        default=0.0, help_text="How much better a candidate must be to replace the champion."
    )
    schedule = models.ForeignKey(
        "django_celery_beat.CrontabSchedule",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        help_text="Also retrain on this schedule (checked every minute), whatever the threshold.",
    )
    adaptive_threshold = models.BooleanField(
        default=True,
        help_text="Lower the threshold when live quality drops; raise it when retrains stop improving.",
    )
    min_threshold = models.PositiveIntegerField(default=20)
    max_threshold = models.PositiveIntegerField(default=100_000)
    trainer_spec = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            'e.g. {"trainer": "sklearn", "estimator": "sklearn.linear_model.LogisticRegression", '
            '"params": {"C": 1.0}}; empty: logistic regression, or ridge for regression.'
        ),
    )

    class Meta:
        verbose_name_plural = "retrain policies"

    def __str__(self) -> str:
        return f"retrain policy of {self.registered_model}"


class ThresholdChange(models.Model):
    """Each automatic change of a retrain threshold, with its reason."""

    policy = models.ForeignKey(RetrainPolicy, on_delete=models.CASCADE, related_name="threshold_changes")
    old_threshold = models.PositiveIntegerField()
    new_threshold = models.PositiveIntegerField()
    reason = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.old_threshold} → {self.new_threshold}"


class LabelledExample(models.Model):
    """A training example sent directly (seed 001's `{"input": ..., "target": ...}`), without a prediction."""

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="examples")
    input = models.JSONField()
    target = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=150)

    class Meta:
        indexes = [models.Index(fields=["registered_model", "created_at"], name="example_model_time")]

    def __str__(self) -> str:
        return f"example {self.pk}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


ACTIVE_RUN_STATUSES = [RunStatus.QUEUED, RunStatus.RUNNING]


class TrainingRun(models.Model):
    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="training_runs")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED)
    trigger = models.CharField(max_length=20, help_text="threshold, schedule, api or command")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    train_count = models.PositiveIntegerField(default=0)
    holdout_count = models.PositiveIntegerField(default=0)
    dataset_sha256 = models.CharField(max_length=64, blank=True)
    metric = models.CharField(max_length=20, blank=True)
    candidate_score = models.FloatField(null=True, blank=True)
    champion_score = models.FloatField(
        null=True, blank=True, help_text="The champion (or the baseline) on the same holdout."
    )
    promoted = models.BooleanField(default=False)
    candidate_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="training_runs"
    )
    decision = models.TextField(blank=True, help_text="Why the candidate was promoted or not.")
    error = models.TextField(blank=True)
    worker_lost = models.BooleanField(
        default=False,
        help_text="Failed because its worker stopped mid-run; it does not count as the model's last run.",
    )
    duration_seconds = models.FloatField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, help_text="When the broker accepted its task.")
    dispatch_error = models.TextField(
        blank=True,
        help_text="Why its task could not be sent to the broker yet; the next retrain check sends it again.",
    )

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["registered_model"],
                condition=Q(status__in=ACTIVE_RUN_STATUSES),
                name="one_active_run_per_model",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.registered_model} ({self.status})"


class ModelArtifact(models.Model):
    """A model version trained by the hub: its file, integrity and lineage."""

    model_version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, related_name="artifact")
    training_run = models.ForeignKey(TrainingRun, null=True, on_delete=models.SET_NULL, related_name="artifacts")
    path = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    size = models.PositiveBigIntegerField()
    trainer_spec = models.JSONField()
    description = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"artifact of {self.model_version}"


class Promotion(models.Model):
    """Each change of a model's champion; the newest row names the current one."""

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="promotions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="+")
    previous_version = models.ForeignKey(
        ModelVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=20, help_text="promotion or rollback")
    reason = models.TextField(blank=True)
    actor = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} of {self.model_version}"
