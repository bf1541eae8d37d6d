from typing import Any

from django.contrib import admin, messages
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from collector.models import (
    ApiKey,
    DriftCheck,
    DriftPolicy,
    DriftReference,
    DriftReport,
    Feedback,
    ModelVersion,
    OutcomeRevision,
    PendingOutcome,
    Prediction,
    RegisteredModel,
)
from collector.services import api_key_create, api_key_revoke


class CappedCountPaginator(Paginator):
    """Counts at most CAP rows, so a list page of a large table never runs a full COUNT(*)."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:
        return self.object_list[: self.CAP + 1].count()


class LargeTableAdmin(admin.ModelAdmin):
    paginator = CappedCountPaginator
    show_full_result_count = False
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Collected data is a record: it changes only through the API and the services behind it.
        return False


class ModelVersionInline(admin.TabularInline):
    model = ModelVersion
    extra = 0
    fields = ["version", "created_at"]
    readonly_fields = ["version", "created_at"]
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RegisteredModel)
class RegisteredModelAdmin(admin.ModelAdmin):
    list_display = ["name", "task_type", "retention_days", "created_at"]
    list_filter = ["task_type"]
    search_fields = ["name"]
    inlines = [ModelVersionInline]
    fieldsets = [
        (None, {"fields": ["name", "task_type", "description", "created_at"]}),
        (
            "Personal data",
            {
                "description": "Applied before anything sent for this model is stored.",
                "fields": ["pii_mask_emails", "pii_mask_cards", "pii_drop_keys", "pii_hash_keys", "pii_patterns"],
            },
        ),
        ("Retention", {"fields": ["retention_days"]}),
    ]

    def get_readonly_fields(self, request: HttpRequest, obj: RegisteredModel | None = None) -> list[str]:
        return ["name", "created_at"] if obj else ["created_at"]


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ["version", "registered_model", "created_at"]
    list_filter = ["registered_model"]
    search_fields = ["version", "registered_model__name"]
    readonly_fields = ["registered_model", "version", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class OutcomeRevisionInline(admin.TabularInline):
    model = OutcomeRevision
    extra = 0
    fields = ["created_at", "actor", "previous_actual", "actual"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class FeedbackInline(admin.TabularInline):
    model = Feedback
    extra = 0
    fields = ["created_at", "kind", "value", "comment", "source"]
    readonly_fields = fields
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Prediction)
class PredictionAdmin(LargeTableAdmin):
    list_display = [
        "id", "registered_model", "model_version", "created_at", "predicted_label", "actual_label", "is_correct",
        "confidence", "latency_ms",
    ]  # fmt: skip
    list_filter = ["registered_model", "is_correct", "source"]
    list_select_related = ["registered_model", "model_version"]
    search_fields = ["=id", "=event_id", "=interaction_id"]
    inlines = [OutcomeRevisionInline, FeedbackInline]
    fieldsets = [
        (None, {"fields": ["registered_model", "model_version", "event_id", "interaction_id", "source"]}),
        ("Model output", {"fields": ["input", "prediction", "predicted_label", "confidence", "latency_ms"]}),
        ("Outcome", {"fields": ["actual", "actual_label", "is_correct", "error", "actual_recorded_at"]}),
        ("More", {"fields": ["attributes", "created_at", "received_at", "payload_sha256"]}),
    ]


@admin.register(Feedback)
class FeedbackAdmin(LargeTableAdmin):
    list_display = ["id", "kind", "registered_model", "prediction", "interaction_id", "short_comment", "created_at"]
    list_filter = ["kind", "registered_model"]
    list_select_related = ["registered_model"]
    search_fields = ["=id", "=interaction_id", "=prediction_event_id", "=event_id"]
    raw_id_fields = ["prediction"]

    @admin.display(description="comment")
    def short_comment(self, obj: Feedback) -> str:
        return obj.comment if len(obj.comment) <= 80 else f"{obj.comment[:77]}..."


@admin.register(PendingOutcome)
class PendingOutcomeAdmin(LargeTableAdmin):
    list_display = ["event_id", "registered_model", "actual", "actor", "created_at"]
    list_filter = ["registered_model"]
    search_fields = ["=event_id"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "all_models", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["all_models", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix"]
    filter_horizontal = ["allowed_models"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return ["name", "allowed_models"]
        return ["name", "prefix", "all_models", "allowed_models", "created_at", "last_used_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return []
        return ["prefix", "all_models", "allowed_models", "created_at", "last_used_at", "revoked_at"]

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        names = [model.name for model in form.cleaned_data.get("allowed_models", [])]
        created, raw_key = api_key_create(name=obj.name, model_names=names)
        obj.pk = created.pk
        obj.refresh_from_db()
        messages.warning(request, f"Copy the new key now; it is stored hashed and will not be shown again: {raw_key}")

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        if change:
            super().save_related(request, form, formsets, change)

    @admin.action(description="Revoke the selected API keys", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = sum(api_key_revoke(api_key=api_key) for api_key in queryset)
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # Revoke instead: a deleted key leaves no trace of who wrote what.
        return False


@admin.register(DriftPolicy)
class DriftPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "registered_model", "enabled", "psi_threshold", "ks_threshold", "p_value", "window_hours", "reference_size",
        "open_review_task",
    ]  # fmt: skip
    list_select_related = ["registered_model"]
    fieldsets = [
        (None, {"fields": ["registered_model", "enabled", "open_review_task"]}),
        ("Thresholds", {"fields": ["psi_threshold", "ks_threshold", "p_value"]}),
        ("Windows", {"fields": ["window_hours", "min_window_predictions", "reference_size"]}),
    ]


@admin.register(DriftReference)
class DriftReferenceAdmin(LargeTableAdmin):
    list_display = ["model_version", "source", "sample_size", "created_at", "last_check"]
    list_filter = ["source", "model_version__registered_model"]
    list_select_related = ["model_version__registered_model", "last_check"]


class DriftReportInline(admin.TabularInline):
    model = DriftReport
    extra = 0
    fields = ["feature", "is_output", "method", "value", "p_value", "threshold", "drifted"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(DriftCheck)
class DriftCheckAdmin(LargeTableAdmin):
    list_display = ["created_at", "model_version", "window_predictions", "reference_size", "drifted"]
    list_filter = ["drifted", "model_version__registered_model"]
    list_select_related = ["model_version__registered_model"]
    fields = ["model_version", "created_at", "window_start", "window_end", "window_predictions", "reference_size"]
    inlines = [DriftReportInline]
