"""Dashboard pages for staff and reviewers: every model at a glance, then one model's quality, latency, traffic,
feedback and retraining over time. Server-rendered from the hourly rollups; charts drawn by Plotly in the browser
from data embedded in the page (no request leaves the hub)."""

import html
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.http import Http404, HttpRequest
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.views.generic import TemplateView

from collector import selectors as collector_selectors
from collector.models import DriftCheck, Feedback, ModelVersion, RegisteredModel, TaskType
from collector.selectors import FeatureDrift, Step, VersionQuality
from loop import selectors as loop_selectors
from reviews import selectors as review_selectors
from reviews.models import ReviewPolicy

PERIOD_DAYS = (1, 7, 30, 90)
DEFAULT_PERIOD_DAYS = 7
HOURLY_UP_TO_DAYS = 7  # longer periods are drawn per day
HISTORY_ROWS = 20
DRIFT_BARS = 30
DRIFTED_COLOUR, STEADY_COLOUR = "#ba2121", "#417690"


@dataclass(frozen=True)
class FeedbackShare:
    total: int
    negative: int

    @property
    def negative_rate(self) -> float | None:
        return self.negative / self.total if self.total else None


def _negative(policy: ReviewPolicy) -> Callable[[str, int], bool]:
    """Whether feedback of a kind and rating (0: none) counts as negative under the model's review policy."""

    @cache
    def judge(kind: str, rating: int) -> bool:
        return policy.counts_as_negative(Feedback(kind=kind, value=rating or None))

    return judge


def _feedback_share(policy: ReviewPolicy, counts: list[tuple[str, int, int]]) -> FeedbackShare:
    negative = _negative(policy)
    return FeedbackShare(
        total=sum(count for *_, count in counts),
        negative=sum(count for kind, rating, count in counts if negative(kind, rating)),
    )


def _headline_quality(qualities: list[VersionQuality], champion_version: str | None) -> VersionQuality | None:
    """The champion's quality, else the newest version's that has outcomes."""
    by_version = {quality.version: quality for quality in qualities}
    if champion_version in by_version:
        return by_version[champion_version]
    with_outcomes = [quality for quality in qualities if quality.outcomes]
    return with_outcomes[-1] if with_outcomes else None


@method_decorator(staff_member_required, name="dispatch")
class DashboardPage(PermissionRequiredMixin, TemplateView):
    # What the Reviewers group has: reading the collected data. A staff account without it gets a 403.
    permission_required = ("collector.view_registeredmodel", "collector.view_prediction")
    raise_exception = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), **admin.site.each_context(self.request)}


class OverviewView(DashboardPage):
    template_name = "dashboard/overview.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        now = timezone.now()
        models = list(RegisteredModel.objects.order_by("name"))
        qualities: dict[str, list[VersionQuality]] = {}
        for quality in collector_selectors.quality_list(with_windows=False):
            qualities.setdefault(quality.model, []).append(quality)
        champions = loop_selectors.champions()
        last_runs = loop_selectors.last_runs()
        recent_predictions = collector_selectors.predictions_since_by_model(since=now - timedelta(hours=24))
        recent_feedback = collector_selectors.feedback_since_by_model(since=now - timedelta(days=7))
        policies = review_selectors.review_policies(models=models)
        open_tasks = review_selectors.active_task_counts()
        drift = _latest_drift_by_model({m.name: champions[m.pk].version for m in models if m.pk in champions})
        rows = []
        for model in models:
            champion = champions.get(model.pk)
            versions = qualities.get(model.name, [])
            rows.append(
                {
                    "model": model,
                    "champion": champion,
                    "quality": _headline_quality(versions, champion.version if champion else None),
                    "predictions": sum(quality.predictions for quality in versions),
                    "predictions_24h": recent_predictions.get(model.pk, 0),
                    "feedback_7d": _feedback_share(policies[model.pk], recent_feedback.get(model.pk, [])),
                    "open_tasks": open_tasks.get(model.pk, 0),
                    "drift": drift.get(model.name),
                    "last_run": last_runs.get(model.pk),
                }
            )
        return {**super().get_context_data(**kwargs), "title": "Models", "rows": rows}


class ModelDashboardView(DashboardPage):
    template_name = "dashboard/model.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        model = RegisteredModel.objects.filter(name=kwargs["name"]).first()
        if model is None:
            raise Http404(f"No model named {kwargs['name']!r}.")
        days = _period_days(self.request)
        step: Step = "hour" if days <= HOURLY_UP_TO_DAYS else "day"
        since = (timezone.now() - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
        if step == "day":
            since = since.replace(hour=0)
        champion = loop_selectors.champions().get(model.pk)
        qualities = collector_selectors.quality_list(registered_model=model, with_windows=False)
        feedback = collector_selectors.feedback_series(registered_model=model, since=since, step=step)
        policy = review_selectors.review_policies(models=[model])[model.pk]
        runs = loop_selectors.training_history(registered_model=model, limit=HISTORY_ROWS)
        drift_check = _drift_check_shown(model, champion)
        drift = _drift_rows(collector_selectors.drift_reports(drift_check=drift_check)) if drift_check else []
        charts = [
            _quality_chart(model, since, step),
            _latency_chart(model, since, step),
            _volume_chart(model, since, step),
            _feedback_chart(feedback, policy),
            _drift_chart(drift_check, drift),
            _retrain_chart(runs),
        ]
        return {
            **super().get_context_data(**kwargs),
            "title": f"Model {model.name}",
            "model": model,
            "champion": champion,
            "quality": _headline_quality(qualities, champion.version if champion else None),
            "predictions": sum(quality.predictions for quality in qualities),
            "feedback_share": _feedback_share(policy, [(c.kind, c.rating, c.count) for c in feedback]),
            "days": days,
            "step": step,
            "periods": PERIOD_DAYS,
            "charts": charts,
            "chart_data": {chart["id"]: chart for chart in charts if chart["traces"]},
            "drift_check": drift_check,
            "drift": drift,
            "runs": runs,
            "champion_changes": loop_selectors.champion_changes(registered_model=model, limit=HISTORY_ROWS),
            "tasks": review_selectors.active_tasks(registered_model=model, limit=HISTORY_ROWS),
        }


# --- drift ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftSummary:
    version: str
    checked_at: datetime
    drifted: list[str]
    features: int


def _latest_drift_by_model(champion_of: dict[str, str]) -> dict[str, DriftSummary]:
    """Per model name, the latest drift check of its champion, else of whichever version was checked last."""
    shown: dict[str, tuple[bool, int, DriftSummary]] = {}
    for model_name, version, check, reports in collector_selectors.latest_drift_reports():
        is_champion = champion_of.get(model_name) == version
        features = {(report.feature, report.is_output) for report in reports}
        drifted = sorted({report.feature for report in reports if report.drifted})
        summary = DriftSummary(version, check.created_at, drifted, len(features))
        rank = (is_champion, check.pk)
        if model_name not in shown or rank > shown[model_name][:2]:
            shown[model_name] = (*rank, summary)
    return {name: entry[2] for name, entry in shown.items()}


def _drift_check_shown(model: RegisteredModel, champion: ModelVersion | None) -> DriftCheck | None:
    """The check the loop acts on; else the latest of any age (the page says when it was made)."""
    return collector_selectors.current_drift_check(
        registered_model=model, version=champion.version if champion else None
    ) or collector_selectors.latest_drift_check(registered_model=model)


@dataclass
class DriftRow:
    """One input or output of a drift check, with every statistic computed for it."""

    feature: str
    is_output: bool
    psi: FeatureDrift | None = None
    ks: FeatureDrift | None = None
    chi2: FeatureDrift | None = None

    @property
    def drifted(self) -> bool:
        return any(report.drifted for report in (self.psi, self.ks, self.chi2) if report)


def _drift_rows(reports: list[FeatureDrift]) -> list[DriftRow]:
    rows: dict[tuple[bool, str], DriftRow] = {}
    for report in reports:
        row = rows.setdefault((report.is_output, report.feature), DriftRow(report.feature, report.is_output))
        setattr(row, report.method, report)
    # Drifted first, then by PSI: what needs a look comes first.
    return sorted(rows.values(), key=lambda row: (not row.drifted, -(row.psi.value if row.psi else 0.0)))


def _period_days(request: HttpRequest) -> int:
    try:
        days = int(request.GET.get("days", DEFAULT_PERIOD_DAYS))
    except ValueError:
        return DEFAULT_PERIOD_DAYS
    return days if days in PERIOD_DAYS else DEFAULT_PERIOD_DAYS


# --- charts: a title, axis titles and Plotly traces; the template embeds them as JSON ------------------------


def _chart(chart_id: str, title: str, y_title: str, traces: list[dict[str, Any]], empty: str, **layout: Any) -> dict:
    return {"id": chart_id, "title": title, "y_title": y_title, "traces": traces, "empty": empty, "layout": layout}


def _plain(text: str) -> str:
    """Text for Plotly, which reads tags in trace names and labels (a version named "<a href=...>" would become a
    link): escaped, so it shows as written. Version and feature names come from API clients."""
    return html.escape(text, quote=False)


def _line(name: str, points: list[tuple[datetime, float | None]], **style: Any) -> dict[str, Any]:
    return {
        "type": "scatter",
        "mode": "lines+markers",
        "name": _plain(name),
        "x": [at.isoformat() for at, _ in points],
        "y": [value for _, value in points],
        **style,
    }


def _quality_chart(model: RegisteredModel, since: datetime, step: Step) -> dict:
    series = collector_selectors.quality_series(registered_model=model, since=since, step=step)
    if model.task_type == TaskType.REGRESSION:
        measures, y_title = ("mae", "rmse"), "error"
    elif model.task_type in (TaskType.BINARY, TaskType.MULTICLASS):
        measures, y_title = ("accuracy", "precision", "recall", "f1"), "score"
    else:
        measures, y_title = ("accuracy",), "score"
    traces = [
        _line(f"{version} {measure}", [(point.at, getattr(point, measure)) for point in points])
        for version, points in series.items()
        for measure in measures
    ]
    return _chart(
        "quality", f"Quality per version, by {step} of prediction", y_title, traces, "No outcomes in this period."
    )


def _latency_chart(model: RegisteredModel, since: datetime, step: Step) -> dict:
    points = collector_selectors.latency_series(registered_model=model, since=since, step=step)
    traces = [_line(name, [(point.at, getattr(point, name)) for point in points]) for name in ("p50", "p95", "p99")]
    return _chart("latency", "Prediction latency", "ms", traces if points else [], "No latencies in this period.")


def _volume_chart(model: RegisteredModel, since: datetime, step: Step) -> dict:
    series = collector_selectors.prediction_series(registered_model=model, since=since, step=step)
    traces = [
        {"type": "bar", "name": _plain(version), "x": [at.isoformat() for at, _ in points], "y": [n for _, n in points]}
        for version, points in series.items()
    ]
    return _chart("volume", f"Predictions per {step}", "predictions", traces, "No predictions in this period.",
                  barmode="stack")  # fmt: skip


def _feedback_chart(feedback: list[collector_selectors.FeedbackCount], policy: ReviewPolicy) -> dict:
    negative = _negative(policy)
    totals: dict[datetime, list[int]] = {}
    for item in feedback:
        counts = totals.setdefault(item.at, [0, 0])
        counts[0] += item.count
        if negative(item.kind, item.rating):
            counts[1] += item.count
    hours = sorted(totals)
    traces = [
        {"type": "bar", "name": "feedback", "x": [h.isoformat() for h in hours], "y": [totals[h][0] for h in hours]},
        _line("negative rate", [(h, totals[h][1] / totals[h][0]) for h in hours], yaxis="y2"),
    ]
    return _chart(
        "feedback", "Human feedback and negative rate", "items", traces if hours else [],
        "No feedback in this period.",
        yaxis2={
            "title": {"text": "negative rate"}, "overlaying": "y", "side": "right", "range": [0, 1],
            "tickformat": ".0%",
        },
    )  # fmt: skip


def _drift_chart(check: DriftCheck | None, rows: list[DriftRow]) -> dict:
    with_psi = [row for row in rows if row.psi is not None][:DRIFT_BARS]
    names = [_plain(f"{row.feature} (output)" if row.is_output else row.feature) for row in with_psi]
    traces = [
        {"type": "bar", "name": "PSI", "x": names, "y": [row.psi.value for row in with_psi],
         "marker": {"color": [DRIFTED_COLOUR if row.drifted else STEADY_COLOUR for row in with_psi]}},
        {"type": "scatter", "mode": "lines", "name": "threshold", "x": names,
         "y": [row.psi.threshold for row in with_psi], "line": {"dash": "dash", "color": DRIFTED_COLOUR}},
    ]  # fmt: skip
    title = "Drift: PSI per input and output"
    if check is not None:
        window = f"{check.window_predictions} predictions since {check.window_start:%Y-%m-%d %H:%M}"
        title += f" of {check.model_version.version}, {window}"  # the template escapes titles
    return _chart("drift", title, "PSI", traces if with_psi else [],
                  "No drift check yet: it needs a reference and enough predictions in the window.",
                  xaxis={"type": "category"})  # fmt: skip


def _retrain_chart(runs: list) -> dict:
    scored = sorted((run for run in runs if run.candidate_score is not None), key=lambda run: run.pk)
    names = [f"run {run.pk}" for run in scored]
    traces = [
        {"type": "scatter", "mode": "lines+markers", "name": "candidate", "x": names,
         "y": [run.candidate_score for run in scored], "text": [run.decision for run in scored]},
        {"type": "scatter", "mode": "lines+markers", "name": "champion before", "x": names,
         "y": [run.champion_score for run in scored]},
    ]  # fmt: skip
    metric = scored[-1].metric if scored else ""
    return _chart("retrains", "Retrains: candidate against the champion on the same holdout", metric,
                  traces if scored else [], "No finished retrains yet.", xaxis={"type": "category"})  # fmt: skip
