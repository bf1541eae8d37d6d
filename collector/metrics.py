"""The hub's `/metrics`: django-prometheus' process metrics plus model quality read from the counter tables.

Quality is read from the database at scrape time, so every web process answers the same numbers, and they
survive restarts. Under gunicorn, PROMETHEUS_MULTIPROC_DIR makes the request metrics add up across workers.
"""

import hmac
import logging
import os
from collections.abc import Iterator

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from collector import selectors

logger = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
VERSION_LABELS = ["model", "version"]


class _ThisProcess(Collector):
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class QualityCollector(Collector):
    """Confusion counts and quality per model version, feedback counts per model and kind."""

    def describe(self) -> list[Metric]:
        return []  # no database query when the collector is registered

    def collect(self) -> Iterator[Metric]:
        qualities = selectors.quality_list()
        yield from self._counts(qualities)
        yield from self._quality(qualities)
        yield from self._windows(qualities)
        yield from self._confidence(qualities)
        feedback = CounterMetricFamily("model_feedback", "Human feedback received, by kind.", labels=["model", "kind"])
        for model, kind, count in selectors.feedback_counts():
            feedback.add_metric([model, kind], count)
        yield feedback

    def _counts(self, qualities: list[selectors.VersionQuality]) -> Iterator[Metric]:
        names = {
            "true_positives": ("true_positives", "Binary outcomes 1 predicted as 1."),
            "true_negatives": ("true_negatives", "Binary outcomes 0 predicted as 0."),
            "false_positives": ("false_positives", "Binary outcomes 0 predicted as 1."),
            "false_negatives": ("false_negatives", "Binary outcomes 1 predicted as 0."),
        }
        families = {key: CounterMetricFamily(name, text, labels=VERSION_LABELS) for key, (name, text) in names.items()}
        predictions = CounterMetricFamily("model_predictions", "Predictions recorded.", labels=VERSION_LABELS)
        outcomes = CounterMetricFamily("model_outcomes", "Predictions whose outcome is known.", labels=VERSION_LABELS)
        last_outcome = GaugeMetricFamily(
            "model_last_outcome_timestamp_seconds", "When the last outcome was recorded.", labels=VERSION_LABELS
        )
        for quality in qualities:
            labels = [quality.model, quality.version]
            predictions.add_metric(labels, quality.predictions)
            outcomes.add_metric(labels, quality.outcomes)
            if quality.last_outcome_at is not None:
                last_outcome.add_metric(labels, quality.last_outcome_at.timestamp())
            if quality.binary is not None:
                for key, family in families.items():
                    family.add_metric(labels, getattr(quality.binary, key))
        yield from families.values()
        yield from (predictions, outcomes, last_outcome)

    def _quality(self, qualities: list[selectors.VersionQuality]) -> Iterator[Metric]:
        def gauge(name: str, text: str, labels: list[str] = VERSION_LABELS) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, text, labels=labels)

        accuracy = gauge("model_accuracy", "Share of outcomes predicted right.")
        precision = gauge("model_precision", "Precision (binary: of class 1; multiclass: macro average).")
        recall = gauge("model_recall", "Recall (binary: of class 1; multiclass: macro average).")
        f1 = gauge("model_f1_score", "F1 score (binary: of class 1; multiclass: macro average).")
        class_labels = [*VERSION_LABELS, "class"]
        class_precision = gauge("model_class_precision", "Precision of one class (multiclass).", class_labels)
        class_recall = gauge("model_class_recall", "Recall of one class (multiclass).", class_labels)
        class_f1 = gauge("model_class_f1_score", "F1 score of one class (multiclass).", class_labels)
        previous = gauge(
            "model_previous_version_accuracy", "Accuracy of the model's version registered before this one."
        )
        mae = gauge("model_mae", "Mean absolute error (regression).")
        rmse = gauge("model_rmse", "Root mean squared error (regression).")
        earlier: dict[str, float] = {}
        for quality in qualities:  # ordered by model, then version creation
            labels = [quality.model, quality.version]
            if quality.model in earlier:
                previous.add_metric(labels, earlier[quality.model])
            if quality.classification is not None:
                earlier[quality.model] = quality.classification.accuracy
                accuracy.add_metric(labels, quality.classification.accuracy)
                if quality.task_type != "generative":
                    precision.add_metric(labels, quality.classification.precision)
                    recall.add_metric(labels, quality.classification.recall)
                    f1.add_metric(labels, quality.classification.f1)
                for label, scores in quality.classification.per_class.items():
                    class_precision.add_metric([*labels, label], scores.precision)
                    class_recall.add_metric([*labels, label], scores.recall)
                    class_f1.add_metric([*labels, label], scores.f1)
            if quality.regression is not None:
                mae.add_metric(labels, quality.regression.mae)
                rmse.add_metric(labels, quality.regression.rmse)
        yield from (accuracy, precision, recall, f1, class_precision, class_recall, class_f1, previous, mae, rmse)

    def _windows(self, qualities: list[selectors.VersionQuality]) -> Iterator[Metric]:
        labels = [*VERSION_LABELS, "window"]
        accuracy = GaugeMetricFamily("model_window_accuracy", "Accuracy over a recent window.", labels=labels)
        mae = GaugeMetricFamily("model_window_mae", "Mean absolute error over a recent window.", labels=labels)
        for quality in qualities:
            for window, figures in quality.windows.items():
                if figures.accuracy is not None:
                    accuracy.add_metric([quality.model, quality.version, window], figures.accuracy)
                if figures.mae is not None:
                    mae.add_metric([quality.model, quality.version, window], figures.mae)
        yield from (accuracy, mae)

    def _confidence(self, qualities: list[selectors.VersionQuality]) -> Iterator[Metric]:
        estimated = GaugeMetricFamily(
            "model_estimated_accuracy",
            "Mean confidence of the predictions still waiting for their outcome: their expected accuracy.",
            labels=VERSION_LABELS,
        )
        labelled_confidence = GaugeMetricFamily(
            "model_labelled_confidence",
            "Mean confidence of the predictions whose outcome is known (compare with model_labelled_accuracy).",
            labels=VERSION_LABELS,
        )
        labelled_accuracy = GaugeMetricFamily(
            "model_labelled_accuracy",
            "Share right of the predictions sent with a confidence whose outcome is known.",
            labels=VERSION_LABELS,
        )
        for quality in qualities:
            figures = quality.confidence
            labels = [quality.model, quality.version]
            if figures is not None and figures.estimated_accuracy is not None:
                estimated.add_metric(labels, figures.estimated_accuracy)
            if figures is not None and figures.labelled_confidence is not None:
                labelled_confidence.add_metric(labels, figures.labelled_confidence)
                labelled_accuracy.add_metric(labels, figures.labelled_accuracy)
        yield from (estimated, labelled_confidence, labelled_accuracy)


class DriftCollector(Collector):
    """The latest drift check of every version: a handful of rows, whatever the number of predictions."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        feature_labels = [*VERSION_LABELS, "feature", "method"]
        families = {
            (False, "value"): GaugeMetricFamily(
                "model_feature_drift",
                "Drift of an input feature: PSI, KS statistic or chi-square.",
                labels=feature_labels,
            ),
            (True, "value"): GaugeMetricFamily(
                "model_prediction_drift",
                'Drift of the model\'s output, feature "score" (confidence) or "prediction": PSI, KS or chi-square.',
                labels=feature_labels,
            ),
            (False, "p_value"): GaugeMetricFamily(
                "model_feature_drift_p_value",
                "p-value of the KS or chi-square test of an input.",
                labels=feature_labels,
            ),
            (True, "p_value"): GaugeMetricFamily(
                "model_prediction_drift_p_value",
                "p-value of the KS or chi-square test of an output.",
                labels=feature_labels,
            ),
        }
        threshold = GaugeMetricFamily(
            "model_drift_threshold",
            "The model's threshold on the PSI or KS statistic.",
            labels=[*VERSION_LABELS, "method"],
        )
        drifted = GaugeMetricFamily(
            "model_drifted_features", "Inputs and outputs over a threshold in the latest check.", labels=VERSION_LABELS
        )
        window = GaugeMetricFamily(
            "model_drift_window_predictions",
            "Predictions in the window of the latest drift check.",
            labels=VERSION_LABELS,
        )
        checked = GaugeMetricFamily(
            "model_drift_check_timestamp_seconds", "When the latest drift check ran.", labels=VERSION_LABELS
        )
        for model, version, check, reports in selectors.latest_drift_reports(fresh=True):
            labels = [model, version]
            thresholds: dict[str, float] = {}
            for report in reports:
                families[(report.is_output, "value")].add_metric([*labels, report.feature, report.method], report.value)
                if report.p_value is not None:
                    families[(report.is_output, "p_value")].add_metric(
                        [*labels, report.feature, report.method], report.p_value
                    )
                if report.threshold is not None:
                    thresholds[report.method] = report.threshold
            for method, value in sorted(thresholds.items()):
                threshold.add_metric([*labels, method], value)
            drifted.add_metric(labels, len({(r.is_output, r.feature) for r in reports if r.drifted}))
            window.add_metric(labels, check.window_predictions)
            checked.add_metric(labels, check.created_at.timestamp())
        yield from families.values()
        yield from (threshold, drifted, window, checked)


def _authorised(request: HttpRequest) -> bool:
    token = settings.FEEDBACKHUB_METRICS_TOKEN
    if not token:
        return True
    sent = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(sent.encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _authorised(request):
        response = HttpResponse("Send 'Authorization: Bearer <FEEDBACKHUB_METRICS_TOKEN>'.\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    try:
        body = _exposition(QualityCollector(), DriftCollector(), _DatabaseUp(1))
    except (OperationalError, InterfaceError) as error:
        # The process' own request and error counters still tell Prometheus what clients meet meanwhile.
        logger.warning("/metrics without model series: the database is unavailable: %s", error)
        body = _exposition(_DatabaseUp(0))
    return HttpResponse(body, content_type=CONTENT_TYPE)


class _DatabaseUp(Collector):
    def __init__(self, value: int) -> None:
        self.value = value

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "feedbackhub_database_up", "1 when this scrape could read the database, else 0.", value=self.value
        )


def _exposition(*collectors: Collector) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)
