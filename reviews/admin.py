import json
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.timesince import timesince

from collector.models import Prediction, RegisteredModel
from feedbackhub.errors import DomainError
from loop.prioritize import label_queue
from reviews import services
from reviews.insights import insights_for
from reviews.models import (
    Correction,
    CorrectionStatus,
    Instruction,
    KnowledgeEntry,
    ReviewEvent,
    ReviewPolicy,
    ReviewTask,
)


class AssignmentFilter(admin.SimpleListFilter):
    title = "assignment"
    parameter_name = "assigned"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("me", "Assigned to me"), ("none", "Unassigned")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "me":
            return queryset.filter(assignee=request.user)
        if self.value() == "none":
            return queryset.filter(assignee__isnull=True)
        return queryset


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class RelatedFeedbackInline(ReadOnlyInline):
    model = ReviewTask.related_feedback.through
    verbose_name = "related feedback"
    verbose_name_plural = "related feedback (read-only)"
    fields = ["kind", "comment", "value", "interaction", "prediction_link", "created"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).select_related("feedback__prediction")

    @admin.display(description="kind")
    def kind(self, row: Any) -> str:
        return row.feedback.get_kind_display()

    @admin.display(description="comment")
    def comment(self, row: Any) -> str:
        return row.feedback.comment

    @admin.display(description="value")
    def value(self, row: Any) -> Any:
        return row.feedback.value

    @admin.display(description="interaction")
    def interaction(self, row: Any) -> str:
        return row.feedback.interaction_id

    @admin.display(description="created")
    def created(self, row: Any) -> str:
        return formats.localize(timezone.localtime(row.feedback.created_at))

    @admin.display(description="prediction (input → output)")
    def prediction_link(self, row: Any) -> str:
        prediction = row.feedback.prediction
        if prediction is None:
            return "-"
        url = reverse("admin:collector_prediction_change", args=[prediction.pk])
        summary = f"#{prediction.pk}: {str(prediction.input)[:80]} → {str(prediction.prediction)[:40]}"
        return format_html('<a href="{}">{}</a>', url, summary)


class CorrectionInline(admin.StackedInline):
    model = Correction
    extra = 0
    fields = ["kind", "prediction", "topic", "value", "note", "status", "author"]
    readonly_fields = ["status", "author"]
    raw_id_fields = ["prediction"]
    fk_name = "task"

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # decided with the Corrections list's actions; a proposal is not edited in place

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReviewEventInline(ReadOnlyInline):
    model = ReviewEvent
    verbose_name_plural = "history"
    fields = ["created_at", "actor_label", "action", "detail"]
    readonly_fields = fields


@admin.register(ReviewTask)
class ReviewTaskAdmin(admin.ModelAdmin):
    change_list_template = "admin/reviews/reviewtask/change_list.html"
    list_display = ["id", "priority", "status", "registered_model", "suggested_action", "related", "assignee", "age"]
    list_display_links = ["id", "suggested_action"]
    list_filter = ["status", "priority", "registered_model", AssignmentFilter]
    ordering = ["priority_rank", "created_at"]
    list_select_related = ["registered_model", "assignee"]
    actions = ["assign_to_me", "resolve", "dismiss"]
    fields = [
        "registered_model", "status", "priority", "assignee", "suggested_action", "negative_rate", "pattern_key",
        "trigger", "created_at", "closed_at", "resolution_note",
    ]  # fmt: skip
    readonly_fields = [f for f in fields if f != "resolution_note"]
    inlines = [RelatedFeedbackInline, CorrectionInline, ReviewEventInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request).annotate(related_count=Count("related_feedback"))

    def get_urls(self) -> list:
        insights = self.admin_site.admin_view(self.insights_view)
        queue = self.admin_site.admin_view(self.label_queue_view)
        return [
            path("insights/", insights, name="reviews_insights"),
            path("label-queue/", queue, name="reviews_label_queue"),
            *super().get_urls(),
        ]

    def label_queue_view(self, request: HttpRequest) -> HttpResponse:
        """Unlabelled predictions ranked by the loop's label queue; a label given here is applied at once."""
        if not request.user.has_perms(["reviews.add_correction", "reviews.change_correction"]):
            raise PermissionDenied
        models = RegisteredModel.objects.exclude(task_type="generative").order_by("name")
        chosen = models.filter(name=request.GET.get("model") or request.POST.get("model", "")).first() or models.first()
        if request.method == "POST" and chosen is not None:
            self._label_from_queue(request, chosen)
            return HttpResponseRedirect(f"{request.path}?model={chosen.name}")
        queue = label_queue(registered_model=chosen, limit=50) if chosen else []
        rows = Prediction.objects.in_bulk([item.prediction_id for item in queue])
        context = {
            **self.admin_site.each_context(request),
            "title": f"Label queue: {chosen.name if chosen else 'no model'}",
            "opts": self.model._meta,
            "models": models,
            "chosen": chosen,
            "items": [(item, rows[item.prediction_id]) for item in queue],
        }
        return TemplateResponse(request, "admin/reviews/label_queue.html", context)

    def _label_from_queue(self, request: HttpRequest, model: RegisteredModel) -> None:
        raw_id = request.POST.get("prediction_id", "")
        prediction_id = int(raw_id) if raw_id.isascii() and raw_id.isdigit() and len(raw_id) < 19 else 0
        prediction = Prediction.objects.filter(registered_model=model, pk=prediction_id).first()
        text = request.POST.get("label", "").strip()
        if prediction is None or not text:
            self.message_user(request, "Choose a prediction and type its label.", messages.ERROR)
            return
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        try:
            correction = services.correction_propose(
                registered_model=model, prediction=prediction, kind="label", value=value, author=request.user
            )
            services.correction_approve(correction=correction, user=request.user)
        except DomainError as error:
            self.message_user(request, f"Not labelled: {error.message}", messages.ERROR)
        else:
            self.message_user(request, f"Prediction {prediction.pk} labelled {value!r}.", messages.SUCCESS)

    def insights_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        models = RegisteredModel.objects.order_by("name")
        chosen = models.filter(name=request.GET.get("model", "")).first()
        days_text = request.GET.get("days", "")
        days = int(days_text) if days_text.isascii() and days_text.isdigit() else 30
        context = {
            **self.admin_site.each_context(request),
            "title": f"Insights: {chosen.name if chosen else 'all models'}, last {days} days",
            "opts": self.model._meta,
            "models": models,
            "chosen": chosen,
            "days": max(1, min(days, 3650)),
            "insights": insights_for(registered_model=chosen, days=max(1, min(days, 3650))),
        }
        return TemplateResponse(request, "admin/reviews/insights.html", context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tasks are opened by the trigger rule

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="related", ordering="related_count")
    def related(self, task: ReviewTask) -> int:
        return task.related_count

    @admin.display(description="age", ordering="created_at")
    def age(self, task: ReviewTask) -> str:
        return timesince(task.created_at)

    @admin.display(description="trigger")
    def trigger(self, task: ReviewTask) -> str:
        feedback = task.trigger_feedback
        if feedback is None:
            return "-"
        url = reverse("admin:collector_feedback_change", args=[feedback.pk])
        return format_html(
            '<a href="{}">{} #{}</a> {}', url, feedback.get_kind_display(), feedback.pk, feedback.comment
        )

    def save_model(self, request: HttpRequest, obj: ReviewTask, form: Any, change: bool) -> None:
        if "resolution_note" in form.changed_data:
            services.review_task_note(task=obj, user=request.user, note=obj.resolution_note)

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not Correction:
            formset.save()
            return
        task = form.instance
        # The service writes the corrections; the admin's change log reads what the formset says it saved.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for correction_form in formset.extra_forms:
            if not correction_form.has_changed():
                continue
            data = correction_form.cleaned_data
            try:
                correction = services.correction_propose(
                    registered_model=task.registered_model,
                    task=task,
                    prediction=data.get("prediction"),
                    kind=data["kind"],
                    value=data["value"],
                    topic=data.get("topic", ""),
                    note=data.get("note", ""),
                    author=request.user,
                )
            except DomainError as error:
                self.message_user(request, f"Correction not added: {error.message}", messages.ERROR)
            else:
                formset.new_objects.append(correction)

    def _each(self, request: HttpRequest, queryset: QuerySet, change: Any, done: str, skipped: str) -> None:
        changed = sum(1 for task in queryset if change(task=task, user=request.user))
        self.message_user(request, f"{changed} task(s) {done}.", messages.SUCCESS)
        if changed < queryset.count():
            self.message_user(request, f"{queryset.count() - changed} task(s) {skipped}.", messages.WARNING)

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, services.review_task_claim, "assigned to you", "were already assigned or closed")

    @admin.action(description="Resolve", permissions=["change"])
    def resolve(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, services.review_task_resolve, "resolved", "were already closed")

    @admin.action(description="Dismiss", permissions=["change"])
    def dismiss(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._each(request, queryset, services.review_task_dismiss, "dismissed", "were already closed")


@admin.register(Correction)
class CorrectionAdmin(admin.ModelAdmin):
    list_display = ["id", "kind", "status", "registered_model", "task", "prediction", "author", "created_at"]
    list_filter = ["status", "kind", "registered_model"]
    list_select_related = ["registered_model", "author"]
    raw_id_fields = ["task", "prediction"]
    actions = ["approve", "reject"]
    readonly_fields = ["status", "author", "decided_by", "decided_at", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: Correction | None = None) -> list[str]:
        # Proposals are decided with the actions, never edited: an edit would skip the checks and the masking.
        if obj is not None:
            return [field.name for field in Correction._meta.fields]
        return self.readonly_fields

    def has_change_permission(self, request: HttpRequest, obj: Correction | None = None) -> bool:
        if obj is not None and obj.status != CorrectionStatus.PROPOSED:
            return False
        return super().has_change_permission(request, obj)

    def save_model(self, request: HttpRequest, obj: Correction, form: Any, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        created = services.correction_propose(
            registered_model=obj.registered_model,
            task=obj.task,
            prediction=obj.prediction,
            kind=obj.kind,
            value=obj.value,
            topic=obj.topic,
            note=obj.note,
            author=request.user,
        )
        obj.pk = created.pk

    @admin.action(description="Approve and apply", permissions=["change"])
    def approve(self, request: HttpRequest, queryset: QuerySet) -> None:
        applied = 0
        for correction in queryset.select_related("registered_model", "task"):
            try:
                services.correction_approve(correction=correction, user=request.user)
                applied += 1
            except DomainError as error:
                self.message_user(request, f"Correction {correction.pk}: {error.message}", messages.WARNING)
        self.message_user(request, f"{applied} correction(s) approved and applied.", messages.SUCCESS)

    @admin.action(description="Reject", permissions=["change"])
    def reject(self, request: HttpRequest, queryset: QuerySet) -> None:
        rejected = sum(services.correction_reject(correction=c, user=request.user) for c in queryset)
        self.message_user(request, f"{rejected} correction(s) rejected.", messages.SUCCESS)


@admin.register(KnowledgeEntry)
class KnowledgeEntryAdmin(admin.ModelAdmin):
    list_display = ["topic", "version", "registered_model", "created_by", "created_at"]
    list_filter = ["registered_model"]
    search_fields = ["topic", "content"]
    readonly_fields = [
        "registered_model",
        "topic",
        "version",
        "content",
        "created_by",
        "source_correction",
        "created_at",
    ]
    actions = ["restore"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # new versions come from corrections or from restoring one

    @admin.action(description="Restore as the current version", permissions=["view"])
    def restore(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not request.user.has_perm("reviews.add_knowledgeentry"):
            self.message_user(request, "Restoring needs the permission to add knowledge entries.", messages.ERROR)
            return
        for entry in queryset:
            services.knowledge_entry_restore(entry=entry, user=request.user)
        self.message_user(request, f"{queryset.count()} entry version(s) restored.", messages.SUCCESS)


@admin.register(Instruction)
class InstructionAdmin(admin.ModelAdmin):
    list_display = ["registered_model", "version", "is_active", "created_by", "created_at"]
    list_filter = ["registered_model", "is_active"]
    readonly_fields = [
        "registered_model",
        "version",
        "content",
        "is_active",
        "created_by",
        "source_correction",
        "created_at",
    ]
    actions = ["restore"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Restore as the active version", permissions=["view"])
    def restore(self, request: HttpRequest, queryset: QuerySet) -> None:
        if not request.user.has_perm("reviews.add_instruction"):
            self.message_user(request, "Restoring needs the permission to add instructions.", messages.ERROR)
            return
        for instruction in queryset.order_by("version"):
            services.instruction_restore(instruction=instruction, user=request.user)
        self.message_user(request, "Restored; the newest restored version is active.", messages.SUCCESS)


@admin.register(ReviewPolicy)
class ReviewPolicyAdmin(admin.ModelAdmin):
    list_display = ["registered_model", "window", "negative_rate", "high_priority_related", "similarity_threshold"]
