from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from feedbackhub.errors import DomainError
from loop import services
from loop.models import ModelArtifact, Promotion, RetrainPolicy, ThresholdChange, TrainingRun


class ThresholdChangeInline(admin.TabularInline):
    model = ThresholdChange
    extra = 0
    can_delete = False
    fields = ["created_at", "old_threshold", "new_threshold", "reason"]
    readonly_fields = fields
    verbose_name_plural = "automatic threshold changes"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RetrainPolicy)
class RetrainPolicyAdmin(admin.ModelAdmin):
    list_display = ["registered_model", "enabled", "min_new_examples", "holdout_share", "metric", "min_improvement"]
    actions = ["retrain_now", "roll_back"]
    inlines = [ThresholdChangeInline]

    @admin.action(description="Retrain now", permissions=["change"])
    def retrain_now(self, request: HttpRequest, queryset: QuerySet[RetrainPolicy]) -> None:
        for policy in queryset.select_related("registered_model"):
            run, created = services.retrain_request(registered_model=policy.registered_model, trigger="admin")
            verb = "queued" if created else f"already {run.status}"
            self.message_user(request, f"{policy.registered_model}: run {run.pk} {verb}.", messages.INFO)

    @admin.action(description="Roll back to the previous champion", permissions=["change"])
    def roll_back(self, request: HttpRequest, queryset: QuerySet[RetrainPolicy]) -> None:
        for policy in queryset.select_related("registered_model"):
            try:
                promotion = services.champion_rollback(
                    registered_model=policy.registered_model, actor=f"user:{request.user.get_username()}"
                )
            except DomainError as error:
                self.message_user(request, error.message, messages.WARNING)
            else:
                self.message_user(request, f"{policy.registered_model}: champion is {promotion.model_version.version}.")


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TrainingRun)
class TrainingRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "registered_model", "status", "trigger", "promoted", "metric", "candidate_score",
                    "champion_score", "train_count", "holdout_count", "created_at", "duration_seconds"]  # fmt: skip
    list_filter = ["status", "promoted", "registered_model"]


@admin.register(Promotion)
class PromotionAdmin(ReadOnlyAdmin):
    list_display = ["registered_model", "kind", "model_version", "previous_version", "actor", "created_at"]
    list_filter = ["registered_model", "kind"]


@admin.register(ModelArtifact)
class ModelArtifactAdmin(ReadOnlyAdmin):
    list_display = ["model_version", "sha256", "size", "created_at"]
