"""What FeedbackHub collects: models and their versions, predictions, outcomes, human feedback, API keys.

Migrations in collector/migrations are the only way this schema changes. Free-form fields a client wants to
keep go into `Prediction.attributes` (JSON), not into new columns.
"""

import re

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q

from collector.redaction import RedactionPolicy

MODEL_NAME_VALIDATOR = RegexValidator(
    r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
    "Use letters, digits and . _ : - (starting with a letter or digit).",
)


class TaskType(models.TextChoices):
    BINARY = "binary", "Binary classification"
    MULTICLASS = "multiclass", "Multiclass classification"
    REGRESSION = "regression", "Regression"
    GENERATIVE = "generative", "Generative (free text)"


def _validate_key_list(value: object) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ValidationError('Give a list of key names or dotted paths, e.g. ["ssn", "input.user.phone"].')


def _validate_patterns(value: object) -> None:
    if not isinstance(value, list):
        raise ValidationError('Give a list like [{"name": "phone", "pattern": "\\+?\\d[\\d -]{7,}\\d"}].')
    for item in value:
        if not isinstance(item, dict) or set(item) != {"name", "pattern"}:
            raise ValidationError('Each pattern is {"name": ..., "pattern": ...}.')
        try:
            re.compile(item["pattern"])
        except (re.error, TypeError) as error:
            raise ValidationError(f"Pattern {item.get('name')!r} is not a regular expression: {error}") from None


class RegisteredModel(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[MODEL_NAME_VALIDATOR])
    task_type = models.CharField(max_length=20, choices=TaskType.choices)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    pii_mask_emails = models.BooleanField("mask e-mail addresses", default=True)
    pii_mask_cards = models.BooleanField("mask payment card numbers", default=True)
    pii_drop_keys = models.JSONField(
        "keys to drop",
        default=list,
        blank=True,
        validators=[_validate_key_list],
        help_text='Key names (anywhere) or dotted paths whose values are never stored, e.g. ["ssn", "input.dob"].',
    )
    pii_hash_keys = models.JSONField(
        "keys to hash",
        default=list,
        blank=True,
        validators=[_validate_key_list],
        help_text="Like keys to drop, but the value is replaced by a keyed hash, so equal values stay equal.",
    )
    pii_patterns = models.JSONField(
        "more patterns to mask",
        default=list,
        blank=True,
        validators=[_validate_patterns],
        help_text='Regular expressions, e.g. [{"name": "phone", "pattern": "\\+?\\d[\\d ()-]{7,}\\d"}].',
    )
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Delete predictions and feedback older than this. Empty: keep forever."
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def redaction_policy(self) -> "RedactionPolicy":
        return RedactionPolicy.from_settings(
            mask_emails=self.pii_mask_emails,
            mask_cards=self.pii_mask_cards,
            drop_keys=self.pii_drop_keys,
            hash_keys=self.pii_hash_keys,
            patterns=self.pii_patterns,
        )


class ModelVersion(models.Model):
    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=100)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["registered_model", "-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "version"], name="model_version_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.registered_model.name}@{self.version}"


class IngestSource(models.TextChoices):
    API = "api", "REST API"
    LOG_FEEDBACK = "log_feedback", "/log-feedback"
    IMPORT = "import", "feedback.db import"
    SEED_FEEDBACK = "seed_feedback", "/feedback (prediction and outcome at once)"
    PREDICT = "predict", "the hub's predict endpoint"


class Prediction(models.Model):
    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="+")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    event_id = models.CharField(max_length=128, help_text="Client id of the event, unique per model.")
    created_at = models.DateTimeField(help_text="When the model predicted (the client's timestamp).")
    received_at = models.DateTimeField(auto_now_add=True)
    source = models.CharField(max_length=20, choices=IngestSource.choices, default=IngestSource.API)
    input = models.JSONField()
    prediction = models.JSONField()
    predicted_label = models.CharField(max_length=255, blank=True, help_text="Canonical class label.")
    actual = models.JSONField(null=True, blank=True)
    actual_label = models.CharField(max_length=255, blank=True)
    actual_recorded_at = models.DateTimeField(null=True, blank=True)
    is_correct = models.BooleanField(null=True, help_text="Derived on write from prediction and actual.")
    error = models.FloatField(null=True, blank=True, help_text="Regression: actual minus prediction.")
    latency_ms = models.FloatField(null=True, blank=True)
    confidence = models.FloatField(null=True, blank=True)
    interaction_id = models.CharField(max_length=255, blank=True, db_index=True)
    attributes = models.JSONField(default=dict, blank=True)
    payload_sha256 = models.CharField(max_length=64, help_text="Fingerprint of the body, for idempotent retries.")
    training_label = models.JSONField(
        null=True, blank=True, help_text="A reviewer's approved label; training uses it instead of the outcome."
    )
    training_label_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "event_id"], name="prediction_event_unique"),
            models.CheckConstraint(
                condition=Q(confidence__isnull=True) | Q(confidence__gte=0, confidence__lte=1),
                name="prediction_confidence_0_1",
            ),
        ]
        indexes = [
            models.Index(fields=["model_version", "created_at"], name="prediction_version_time"),
            models.Index(fields=["model_version", "is_correct", "created_at"], name="prediction_errors_by_version"),
            models.Index(
                fields=["model_version", "id"], condition=Q(actual__isnull=True), name="prediction_unlabelled"
            ),
            models.Index(fields=["registered_model", "created_at"], name="prediction_model_time"),
            # The last-N-outcomes window of every scrape reads its columns from the index alone: no row fetches,
            # which would be scattered over a large table.
            models.Index(
                fields=["model_version", "actual_recorded_at", "is_correct", "error"],
                condition=Q(actual_recorded_at__isnull=False),
                name="prediction_outcome_window",
            ),
            # The retrain check counts a model's labels newer than its last run, every minute.
            models.Index(
                fields=["registered_model", "actual_recorded_at"],
                condition=Q(actual_recorded_at__isnull=False),
                name="prediction_model_outcomes",
            ),
            models.Index(
                fields=["registered_model", "training_label_at"],
                condition=Q(training_label_at__isnull=False),
                name="prediction_model_labels",
            ),
        ]

    def __str__(self) -> str:
        return f"prediction {self.pk} ({self.event_id})"


# A prediction labelled for training: with an outcome, or a label a reviewer approved (which wins over the outcome).
LABELLED = Q(actual__isnull=False) | Q(training_label__isnull=False)


class OutcomeRevision(models.Model):
    """One change of a prediction's outcome: who set it, when, and what it was before."""

    prediction = models.ForeignKey(Prediction, on_delete=models.CASCADE, related_name="outcome_revisions")
    previous_actual = models.JSONField(null=True, blank=True)
    actual = models.JSONField()
    actor = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"outcome of prediction {self.prediction_id} by {self.actor}"


class PendingOutcome(models.Model):
    """An outcome that arrived before its prediction; applied when the prediction is recorded."""

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="+")
    event_id = models.CharField(max_length=128)
    actual = models.JSONField()
    actor = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "event_id"], name="pending_outcome_unique"),
        ]

    def __str__(self) -> str:
        return f"pending outcome for {self.event_id}"


class FeedbackKind(models.TextChoices):
    THUMBS_UP = "thumbs_up", "Thumbs up"
    THUMBS_DOWN = "thumbs_down", "Thumbs down"
    CORRECTION = "correction", "Correction"
    RATING = "rating", "Rating (1-5)"
    COMMENT = "comment", "Comment"


class Feedback(models.Model):
    """What a person said about a prediction or an interaction."""

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="+")
    prediction = models.ForeignKey(
        Prediction, null=True, blank=True, on_delete=models.SET_NULL, related_name="feedback"
    )
    prediction_event_id = models.CharField(
        max_length=128, blank=True, help_text="Links the prediction when it arrives after the feedback."
    )
    interaction_id = models.CharField(max_length=255, blank=True, db_index=True)
    kind = models.CharField(max_length=20, choices=FeedbackKind.choices)
    value = models.JSONField(null=True, blank=True, help_text="Rating 1-5, or the corrected output.")
    comment = models.TextField(blank=True)
    source = models.CharField(max_length=100, blank=True, help_text="Where the feedback came from.")
    event_id = models.CharField(max_length=128)
    created_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=150)
    payload_sha256 = models.CharField(max_length=64)
    input_sha256 = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_default="",  # so that an older release still running during an upgrade can insert feedback
        editable=False,
        help_text="SHA-256 of the linked prediction's input (canonical JSON): groups feedback by input without a "
        "join to the predictions table.",
    )

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "feedback"
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "event_id"], name="feedback_event_unique"),
        ]
        indexes = [
            models.Index(fields=["registered_model", "kind", "created_at"], name="feedback_model_kind_time"),
            models.Index(fields=["registered_model", "created_at"], name="feedback_model_time"),
            models.Index(
                fields=["registered_model", "prediction_event_id"],
                condition=Q(prediction__isnull=True) & ~Q(prediction_event_id=""),
                name="feedback_unlinked",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} on {self.prediction_id or self.interaction_id}"


class ApiKey(models.Model):
    """A client credential. Only a SHA-256 hash of the key is stored; the key itself is shown once."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True, help_text="Public part of the key, to recognise it.")
    key_sha256 = models.CharField(max_length=64)
    all_models = models.BooleanField(default=True, help_text="May write to every model, and register new ones.")
    allowed_models = models.ManyToManyField(
        RegisteredModel,
        blank=True,
        related_name="api_keys",
        help_text="When not all models: the ones allowed.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class VersionTally(models.Model):
    """Lifetime counts and sums per model version, kept by atomic increments in the transaction of each write.

    Metrics read these few rows instead of counting predictions, so a scrape costs the same at any table size.
    """

    model_version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, related_name="tally")
    predictions = models.BigIntegerField(default=0)
    outcomes = models.BigIntegerField(default=0, help_text="Predictions whose outcome is known.")
    correct = models.BigIntegerField(default=0)
    error_sum = models.FloatField(default=0.0, help_text="Regression: sum of actual minus prediction.")
    abs_error_sum = models.FloatField(default=0.0)
    squared_error_sum = models.FloatField(default=0.0)
    last_outcome_at = models.DateTimeField(null=True, blank=True)
    confident = models.BigIntegerField(default=0, help_text="Predictions sent with a confidence.")
    confidence_sum = models.FloatField(default=0.0)
    confident_outcomes = models.BigIntegerField(default=0, help_text="Of those, the ones whose outcome is known.")
    confident_outcomes_confidence_sum = models.FloatField(default=0.0)
    confident_outcomes_correct = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"tally of {self.model_version_id}"


class ConfusionCell(models.Model):
    """How many outcomes of class `actual_label` the version predicted as `predicted_label`."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="confusion_cells")
    actual_label = models.CharField(max_length=255)
    predicted_label = models.CharField(max_length=255)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "actual_label", "predicted_label"], name="confusion_cell_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.actual_label}->{self.predicted_label}: {self.count}"


class OutcomeSums(models.Model):
    """A version's outcomes in a bucket of time: how many, how many right, and the regression error sums."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    outcomes = models.BigIntegerField(default=0)
    correct = models.BigIntegerField(default=0)
    abs_error_sum = models.FloatField(default=0.0)
    squared_error_sum = models.FloatField(default=0.0)

    class Meta:
        abstract = True


class OutcomeMinute(OutcomeSums):
    """Outcomes per version and minute (by when the outcome was recorded), for cheap rolling windows."""

    minute = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "minute"], name="outcome_minute_unique")]

    def __str__(self) -> str:
        return f"{self.model_version_id} at {self.minute:%Y-%m-%d %H:%M}"


class FeedbackTally(models.Model):
    """Lifetime count of human feedback per model and kind."""

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20, choices=FeedbackKind.choices)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["registered_model", "kind"], name="feedback_tally_unique")]

    def __str__(self) -> str:
        return f"{self.kind}: {self.count}"


# --- drift ------------------------------------------------------------------------------------------


class DriftPolicy(models.Model):
    """When a model's inputs or outputs count as drifted, per registered model."""

    registered_model = models.OneToOneField(RegisteredModel, on_delete=models.CASCADE, related_name="drift_policy")
    enabled = models.BooleanField(default=True)
    psi_threshold = models.FloatField(
        "PSI threshold",
        default=0.2,
        validators=[MinValueValidator(0.0)],
        help_text="An input or output drifts when its population stability index is above this.",
    )
    ks_threshold = models.FloatField(
        "KS threshold",
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="A numeric one also drifts when its Kolmogorov-Smirnov statistic is above this (and significant).",
    )
    p_value = models.FloatField(
        "p-value",
        default=0.01,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Significant: the KS or chi-square p-value is below this. A categorical one drifts when it is.",
    )
    window_hours = models.PositiveIntegerField(
        default=24,
        validators=[MinValueValidator(1)],
        help_text="The current window: the predictions of the last this-many hours.",
    )
    min_window_predictions = models.PositiveIntegerField(
        default=100,
        validators=[MinValueValidator(1)],
        help_text="Judge a window (and a feature) only with at least this many predictions in it.",
    )
    reference_size = models.PositiveIntegerField(
        default=1000,
        validators=[MinValueValidator(1)],
        help_text="A version without a reference from its training set takes its first this-many predictions.",
    )
    open_review_task = models.BooleanField(default=True, help_text="Open a review task when a version drifts.")

    class Meta:
        verbose_name_plural = "drift policies"

    def __str__(self) -> str:
        return f"drift policy of {self.registered_model}"


class DriftReferenceSource(models.TextChoices):
    TRAINING = "training", "Training set at promotion"
    PREDICTIONS = "predictions", "First predictions of the version"


class DriftReference(models.Model):
    """What a version's inputs and outputs looked like at the start: one sketch per feature (collector/sketches.py)."""

    model_version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE, related_name="drift_reference")
    source = models.CharField(max_length=20, choices=DriftReferenceSource.choices)
    sample_size = models.PositiveIntegerField()
    through_prediction_id = models.BigIntegerField(
        default=0, help_text="Predictions up to this id are the reference and never count in a current window."
    )
    inputs = models.JSONField(default=dict, help_text="Feature name -> sketch.")
    outputs = models.JSONField(default=dict, help_text='"score" and "prediction" -> sketch.')
    created_at = models.DateTimeField(auto_now_add=True)
    last_check = models.ForeignKey("DriftCheck", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    def __str__(self) -> str:
        return f"drift reference of {self.model_version}"


class DriftWindowHour(models.Model):
    """Counts of one version's predictions of one hour in its reference's bins; windows add these up."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    predictions = models.BigIntegerField(default=0)
    inputs = models.JSONField(default=dict, help_text="Feature name -> counts per reference bin.")
    outputs = models.JSONField(default=dict)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "hour"], name="drift_window_hour_unique")]

    def __str__(self) -> str:
        return f"{self.model_version_id} at {self.hour:%Y-%m-%d %H:00}"


class DriftWatermark(models.Model):
    """The last prediction counted into the drift windows (one row)."""

    last_prediction_id = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"drift windows counted through prediction {self.last_prediction_id}"


class DriftCheck(models.Model):
    """One comparison of a version's current window with its reference."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="drift_checks")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    window_predictions = models.BigIntegerField()
    reference_size = models.PositiveIntegerField()
    drifted = models.BooleanField(default=False, help_text="Some feature or output crossed a threshold.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["model_version", "created_at"], name="drift_check_version_time")]

    def __str__(self) -> str:
        return f"drift check of {self.model_version} at {self.created_at:%Y-%m-%d %H:%M}"


class DriftMethod(models.TextChoices):
    PSI = "psi", "Population stability index"
    KS = "ks", "Kolmogorov-Smirnov (binned)"
    CHI2 = "chi2", "Chi-square"


class DriftReport(models.Model):
    """One statistic of one feature (or output) in a drift check."""

    drift_check = models.ForeignKey(DriftCheck, on_delete=models.CASCADE, related_name="reports")
    feature = models.CharField(max_length=100)
    is_output = models.BooleanField(default=False, help_text="The model's score or prediction, not an input.")
    method = models.CharField(max_length=10, choices=DriftMethod.choices)
    value = models.FloatField(help_text="PSI, KS statistic or chi-square statistic.")
    p_value = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True, help_text="The policy's threshold on the value.")
    drifted = models.BooleanField(default=False)

    class Meta:
        ordering = ["drift_check", "is_output", "feature", "method"]

    def __str__(self) -> str:
        return f"{self.feature} {self.method} = {self.value:.3g}"


# --- hourly rollups for the dashboard: kept by the same atomic increments as the counters above ---------------

# Upper bounds (ms) of the latency histogram's buckets; one more bucket holds everything slower.
LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000)


class PredictionHour(models.Model):
    """Predictions per version and hour (by when the model predicted), with their latency sum."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    predictions = models.BigIntegerField(default=0)
    latency_count = models.BigIntegerField(default=0, help_text="Predictions that reported their latency.")
    latency_sum_ms = models.FloatField(default=0.0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "hour"], name="prediction_hour_unique")]

    def __str__(self) -> str:
        return f"{self.model_version_id} at {self.hour:%Y-%m-%d %H}h"


class LatencyHour(models.Model):
    """How many of a version's predictions in an hour fell in each latency bucket (see LATENCY_BUCKETS_MS)."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    bucket = models.PositiveSmallIntegerField()
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "hour", "bucket"], name="latency_hour_unique")]

    def __str__(self) -> str:
        return f"{self.model_version_id} at {self.hour:%Y-%m-%d %H}h, bucket {self.bucket}: {self.count}"


class OutcomeHour(OutcomeSums):
    """Outcomes per version and hour of the prediction they judge: how good the predictions of each hour were,
    filled in as their outcomes arrive."""

    hour = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["model_version", "hour"], name="outcome_hour_unique")]

    def __str__(self) -> str:
        return f"{self.model_version_id} at {self.hour:%Y-%m-%d %H}h"


class ConfusionHour(models.Model):
    """Confusion-matrix cells per version and hour of the prediction (as OutcomeHour)."""

    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    actual_label = models.CharField(max_length=255)
    predicted_label = models.CharField(max_length=255)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["model_version", "hour", "actual_label", "predicted_label"], name="confusion_hour_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model_version_id} at {self.hour:%Y-%m-%d %H}h: {self.actual_label}->{self.predicted_label}"


class FeedbackHour(models.Model):
    """Human feedback per model, hour (by when it was given), kind and rating (0 for kinds without one).

    The rating is kept so that the negative share follows each model's own rule of what counts as negative."""

    registered_model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="+")
    hour = models.DateTimeField()
    kind = models.CharField(max_length=20, choices=FeedbackKind.choices)
    rating = models.PositiveSmallIntegerField(default=0)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["registered_model", "hour", "kind", "rating"], name="feedback_hour_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} at {self.hour:%Y-%m-%d %H}h: {self.count}"
