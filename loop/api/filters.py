from datetime import UTC, datetime

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from collector.models import LABELLED, Feedback, FeedbackKind, Prediction
from reviews.models import Priority, ReviewTask, TaskStatus


class BoundedIsoDateTimeField(IsoDateTimeField):
    def to_python(self, value: str) -> datetime | None:
        parsed = super().to_python(value)
        try:
            in_utc = parsed.astimezone(UTC) if parsed is not None else None
        except OverflowError:
            in_utc = None
        if parsed is not None and (in_utc is None or not 1900 <= in_utc.year <= 9000):
            raise forms.ValidationError("Enter a date and time between the years 1900 and 9000.")
        return in_utc  # the same instant; PostgreSQL refuses UTC offsets beyond 15:59 that Python accepts


class BoundedIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = BoundedIsoDateTimeField


class PredictionFilter(django_filters.FilterSet):
    model = django_filters.CharFilter(field_name="registered_model__name")
    version = django_filters.CharFilter(field_name="model_version__version")
    errors_only = django_filters.BooleanFilter(method="filter_errors_only", help_text="Only wrong predictions.")
    labelled = django_filters.BooleanFilter(
        method="filter_labelled",
        help_text="With (true) or without a label for training: an outcome or an approved label correction.",
    )
    since = BoundedIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = BoundedIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    interaction_id = django_filters.CharFilter()
    event_id = django_filters.CharFilter()

    class Meta:
        model = Prediction
        fields: list[str] = []

    def filter_errors_only(self, queryset, name, value):  # noqa: ANN001, ANN201
        return queryset.filter(is_correct=False) if value else queryset

    def filter_labelled(self, queryset, name, value):  # noqa: ANN001, ANN201
        return queryset.filter(LABELLED) if value else queryset.exclude(LABELLED)


class FeedbackFilter(django_filters.FilterSet):
    model = django_filters.CharFilter(field_name="registered_model__name")
    kind = django_filters.ChoiceFilter(choices=FeedbackKind.choices)
    interaction_id = django_filters.CharFilter()
    since = BoundedIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    until = BoundedIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Feedback
        fields: list[str] = []


class ReviewTaskFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=TaskStatus.choices)
    priority = django_filters.ChoiceFilter(choices=Priority.choices)
    model = django_filters.CharFilter(field_name="registered_model__name")

    class Meta:
        model = ReviewTask
        fields: list[str] = []
