"""Shapes of the API's bodies. Validation of types and ranges lives here; domain rules live in services."""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from collector.models import Feedback, FeedbackKind, Prediction, RegisteredModel, TaskType
from loop.models import TrainingRun
from reviews.models import Instruction, KnowledgeEntry, ReviewTask

MAX_ID = 2**63 - 1


class StrictFloatField(serializers.FloatField):
    """A JSON number only: no booleans, no numeric strings."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class AnyJSONField(serializers.JSONField):
    """Any JSON value (object, array, string, number, boolean)."""


def _event_id_field(help_text: str) -> serializers.CharField:
    return serializers.CharField(max_length=128, required=False, help_text=help_text)


class PredictionInSerializer(serializers.Serializer):
    model = serializers.CharField(
        max_length=100,
        required=False,
        default="",
        help_text="Registered model; the default model if omitted.",
    )
    version = serializers.CharField(max_length=100)
    input = AnyJSONField(help_text="What the model saw: any JSON value.")
    prediction = AnyJSONField(help_text="What the model answered.")
    actual = AnyJSONField(required=False, allow_null=True, default=None, help_text="The real outcome, if known.")
    latency_ms = StrictFloatField(required=False, allow_null=True, default=None, min_value=0, max_value=86_400_000)
    confidence = StrictFloatField(required=False, allow_null=True, default=None, min_value=0, max_value=1)
    interaction_id = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    event_id = _event_id_field("Client id of the event; a retry with the same id is stored once.")
    attributes = serializers.DictField(required=False, default=dict, help_text="Free fields of your own.")
    timestamp = serializers.DateTimeField(required=False, allow_null=True, default=None)
    task_type = serializers.ChoiceField(
        choices=TaskType.choices,
        required=False,
        default="",
        help_text="Used only when this registers the model.",
    )


_NOT_FAST = object()


def _plain_text(value: Any, *, max_length: int) -> Any:
    """A string the CharFields store unchanged: non-empty, no outer whitespace, short enough; else _NOT_FAST.

    The parser has already refused NUL characters and unpaired surrogates anywhere in the body."""
    if type(value) is not str or not value or len(value) > max_length or value[0].isspace() or value[-1].isspace():
        return _NOT_FAST
    return value


def _bounded_number(value: Any, *, high: float) -> Any:
    if value is None:
        return None
    if type(value) not in (int, float) or not 0 <= value <= high:
        return _NOT_FAST
    return float(value)


def prediction_in_fast(data: Any) -> dict[str, Any] | None:
    """PredictionInSerializer's validated_data for the common shape of a valid prediction, or None when the body
    is anything else (invalid, or valid but unusual), which then goes through the serializer for its exact answer.

    The serializer costs about 150 µs a prediction; a batch of 1,000 would spend most of its time there.
    """
    if type(data) is not dict:
        return None
    get = data.get
    version = _plain_text(get("version"), max_length=100)
    model = _plain_text(get("model"), max_length=100) if "model" in data else ""
    interaction_id = get("interaction_id", "")
    if interaction_id != "":
        interaction_id = _plain_text(interaction_id, max_length=255)
    latency_ms = _bounded_number(get("latency_ms"), high=86_400_000)
    confidence = _bounded_number(get("confidence"), high=1)
    attributes = get("attributes", {})
    task_type = get("task_type", "")
    if (
        _NOT_FAST in (version, model, interaction_id, latency_ms, confidence)
        or get("input") is None
        or get("prediction") is None
        or type(attributes) is not dict
        or ("task_type" in data and task_type not in TaskType.values)
        or get("timestamp") is not None
    ):
        return None
    validated = {
        "model": model,
        "version": version,
        "input": data["input"],
        "prediction": data["prediction"],
        "actual": get("actual"),
        "latency_ms": latency_ms,
        "confidence": confidence,
        "interaction_id": interaction_id,
        "attributes": dict(attributes),
        "timestamp": None,
        "task_type": task_type,
    }
    if "event_id" in data:
        validated["event_id"] = _plain_text(data["event_id"], max_length=128)
        if validated["event_id"] is _NOT_FAST:
            return None
    return validated


class LogFeedbackInSerializer(serializers.Serializer):
    """The body of the seed logger's `POST /log-feedback`."""

    input_data = AnyJSONField()
    prediction = AnyJSONField()
    actual_value = AnyJSONField(required=False, allow_null=True, default=None)
    model_version = serializers.CharField(max_length=100)
    latency = StrictFloatField(min_value=0, max_value=86_400, help_text="Seconds.")
    confidence_score = StrictFloatField(required=False, allow_null=True, default=None, min_value=0, max_value=1)
    model = serializers.CharField(max_length=100, required=False, default="")
    interaction_id = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    event_id = _event_id_field("Client id of the event; a retry with the same id is stored once.")


class OutcomeValueSerializer(serializers.Serializer):
    actual = AnyJSONField(help_text="The real outcome.")


class OutcomeInSerializer(serializers.Serializer):
    prediction_id = StrictIntegerField(required=False, min_value=1, max_value=MAX_ID)
    event_id = serializers.CharField(max_length=128, required=False, help_text="The prediction's event_id.")
    model = serializers.CharField(max_length=100, required=False, default="", help_text="With event_id.")
    actual = AnyJSONField(help_text="The real outcome.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("prediction_id" in attrs) == ("event_id" in attrs):
            raise serializers.ValidationError({"prediction_id": "Give either prediction_id or event_id."})
        return attrs


class FeedbackInSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=FeedbackKind.choices)
    prediction_id = StrictIntegerField(required=False, allow_null=True, default=None, min_value=1, max_value=MAX_ID)
    prediction_event_id = serializers.CharField(max_length=128, required=False, allow_blank=True, default="")
    interaction_id = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    model = serializers.CharField(max_length=100, required=False, default="")
    value = AnyJSONField(
        required=False, allow_null=True, default=None, help_text="Rating 1-5, or the corrected output."
    )
    comment = serializers.CharField(max_length=10_000, required=False, allow_blank=True, default="")
    source = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    event_id = _event_id_field("Client id of this feedback; a retry with the same id is stored once.")
    timestamp = serializers.DateTimeField(required=False, allow_null=True, default=None)


class RecordedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["created", "duplicate"])


class RecordedBatchSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    results = RecordedSerializer(many=True)


class LogFeedbackOutSerializer(serializers.Serializer):
    message = serializers.CharField()
    id = serializers.IntegerField()


class OutcomeResultSerializer(serializers.Serializer):
    prediction_id = serializers.IntegerField(allow_null=True)
    event_id = serializers.CharField()
    status = serializers.ChoiceField(choices=["recorded", "changed", "unchanged", "pending"])


class OutcomeBatchSerializer(serializers.Serializer):
    results = OutcomeResultSerializer(many=True)


class PredictionSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="registered_model.name")
    version = serializers.CharField(source="model_version.version")
    input = AnyJSONField()
    prediction = AnyJSONField()
    actual = AnyJSONField(allow_null=True)

    class Meta:
        model = Prediction
        fields = [
            "id", "model", "version", "event_id", "created_at", "received_at", "source", "input", "prediction",
            "predicted_label", "actual", "actual_label", "actual_recorded_at", "is_correct", "error",
            "latency_ms", "confidence", "interaction_id", "attributes",
        ]  # fmt: skip


class FeedbackSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="registered_model.name")
    value = AnyJSONField(allow_null=True)

    class Meta:
        model = Feedback
        fields = [
            "id", "model", "prediction", "prediction_event_id", "interaction_id", "kind", "value", "comment",
            "source", "event_id", "created_at", "received_at",
        ]  # fmt: skip


class RegisteredModelSerializer(serializers.ModelSerializer):
    versions = serializers.SerializerMethodField()

    class Meta:
        model = RegisteredModel
        fields = ["name", "task_type", "description", "created_at", "versions"]

    def get_versions(self, obj: RegisteredModel) -> list[str]:
        return [version.version for version in obj.versions.all()]


@extend_schema_field({"type": "integer", "minimum": 0, "maximum": 1})
class BinaryDigitField(serializers.Field):
    """Exactly the JSON number 0 or 1: not true, "1", 1.0 or null."""

    default_error_messages = {"invalid": "Must be the number 0 or 1, not {value!r}."}

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int) or data not in (0, 1):
            self.fail("invalid", value=data)
        return data

    def to_representation(self, value: int) -> int:
        return value


class SeedFeedbackInSerializer(serializers.Serializer):
    """The body of the seed monitor's `POST /feedback`: one binary prediction and its outcome."""

    prediction = BinaryDigitField()
    actual = BinaryDigitField()
    model = serializers.CharField(max_length=100, required=False, default="")
    version = serializers.CharField(max_length=100, required=False, default="unversioned")
    event_id = _event_id_field("Client id of the event; a retry with the same id is counted once.")


class BinaryCountsSerializer(serializers.Serializer):
    true_positives = serializers.IntegerField()
    true_negatives = serializers.IntegerField()
    false_positives = serializers.IntegerField()
    false_negatives = serializers.IntegerField()
    total = serializers.IntegerField()


class QualityFiguresSerializer(serializers.Serializer):
    accuracy = serializers.FloatField(allow_null=True)
    precision = serializers.FloatField(allow_null=True)
    recall = serializers.FloatField(allow_null=True)
    f1 = serializers.FloatField(allow_null=True)
    mae = serializers.FloatField(allow_null=True)
    rmse = serializers.FloatField(allow_null=True)


class SeedFeedbackOutSerializer(serializers.Serializer):
    model = serializers.CharField()
    version = serializers.CharField()
    counts = BinaryCountsSerializer()
    metrics = QualityFiguresSerializer()


class ClassScoresSerializer(serializers.Serializer):
    precision = serializers.FloatField()
    recall = serializers.FloatField()
    f1 = serializers.FloatField()
    support = serializers.IntegerField()


class ConfusionCellSerializer(serializers.Serializer):
    actual = serializers.CharField()
    predicted = serializers.CharField()
    count = serializers.IntegerField()


class WindowSerializer(serializers.Serializer):
    outcomes = serializers.IntegerField()
    accuracy = serializers.FloatField(allow_null=True)
    mae = serializers.FloatField(allow_null=True)


class ConfidenceQualitySerializer(serializers.Serializer):
    pending = serializers.IntegerField(help_text="Predictions with a confidence, awaiting their outcome.")
    estimated_accuracy = serializers.FloatField(allow_null=True, help_text="Their mean confidence.")
    labelled = serializers.IntegerField(help_text="Predictions with a confidence and an outcome.")
    labelled_confidence = serializers.FloatField(allow_null=True)
    labelled_accuracy = serializers.FloatField(allow_null=True)


class DriftReportSerializer(serializers.Serializer):
    feature = serializers.CharField()
    is_output = serializers.BooleanField()
    method = serializers.ChoiceField(choices=["psi", "ks", "chi2"])
    value = serializers.FloatField()
    p_value = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    drifted = serializers.BooleanField()


class DriftCheckSerializer(serializers.Serializer):
    checked_at = serializers.DateTimeField()
    window_start = serializers.DateTimeField()
    window_end = serializers.DateTimeField()
    window_predictions = serializers.IntegerField()
    reference_size = serializers.IntegerField()
    drifted = serializers.BooleanField()
    reports = DriftReportSerializer(many=True)


class VersionQualitySerializer(serializers.Serializer):
    version = serializers.CharField()
    predictions = serializers.IntegerField()
    outcomes = serializers.IntegerField()
    last_outcome_at = serializers.DateTimeField(allow_null=True)
    counts = BinaryCountsSerializer(allow_null=True, help_text="Binary models only.")
    confusion_matrix = ConfusionCellSerializer(many=True)
    metrics = QualityFiguresSerializer(allow_null=True, help_text="Null until the first outcome.")
    per_class = serializers.DictField(child=ClassScoresSerializer(), help_text="Multiclass models only.")
    windows = serializers.DictField(child=WindowSerializer())
    confidence = ConfidenceQualitySerializer(allow_null=True, help_text="Classification with confidences only.")
    drift = DriftCheckSerializer(allow_null=True, help_text="The version's latest drift check.")


class ModelQualitySerializer(serializers.Serializer):
    model = serializers.CharField()
    task_type = serializers.CharField()
    versions = VersionQualitySerializer(many=True)


class KnowledgeEntrySerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="registered_model.name")

    class Meta:
        model = KnowledgeEntry
        fields = ["id", "model", "topic", "version", "content", "created_at"]


class InstructionSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="registered_model.name")

    class Meta:
        model = Instruction
        fields = ["id", "model", "version", "content", "created_at"]


class ReviewTaskSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="registered_model.name")
    assignee = serializers.CharField(source="assignee.get_username", allow_null=True, default=None)
    related_feedback = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = ReviewTask
        fields = [
            "id", "model", "status", "priority", "suggested_action", "negative_rate", "pattern_key",
            "trigger_feedback", "related_feedback", "assignee", "resolution_note", "created_at", "updated_at",
            "closed_at",
        ]  # fmt: skip


class ExampleInSerializer(serializers.Serializer):
    """Seed 001's training example."""

    input = AnyJSONField(help_text="What the model sees.")
    target = AnyJSONField(help_text="The right answer.")


class PredictInSerializer(serializers.Serializer):
    input = AnyJSONField(help_text="What the model should predict for.")


class PredictOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    event_id = serializers.CharField()
    prediction = AnyJSONField()
    confidence = serializers.FloatField(allow_null=True)
    version = serializers.CharField()


class LabelQueueItemSerializer(serializers.Serializer):
    prediction_id = serializers.IntegerField()
    score = serializers.FloatField()
    uncertainty = serializers.FloatField()
    disagreement = serializers.FloatField()
    drift = serializers.FloatField()
    reasons = serializers.ListField(child=serializers.CharField())
    input = AnyJSONField()
    prediction = AnyJSONField()
    created_at = serializers.DateTimeField()


class TrainingRunSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="registered_model.name")
    candidate_version = serializers.CharField(source="candidate_version.version", allow_null=True, default=None)

    class Meta:
        model = TrainingRun
        fields = [
            "id", "model", "status", "trigger", "created_at", "started_at", "finished_at", "duration_seconds",
            "train_count", "holdout_count", "dataset_sha256", "metric", "candidate_score", "champion_score",
            "promoted", "candidate_version", "decision", "error", "dispatched_at", "dispatch_error",
        ]  # fmt: skip


class ModelVersionSerializer(serializers.Serializer):
    version = serializers.CharField()
    created_at = serializers.DateTimeField()
    champion = serializers.BooleanField()
    trained_by_hub = serializers.BooleanField()
    sha256 = serializers.CharField(allow_null=True)
    metrics = serializers.DictField(allow_null=True)
