"""REST endpoints: thin views that validate shapes and call collector services."""

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import generics, serializers
from rest_framework.exceptions import NotFound as DRFNotFound
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from collector import selectors, services
from collector.exports import FORMATS, export_lines, export_rows
from collector.models import ApiKey, IngestSource, Prediction, RegisteredModel
from feedbackhub.api_errors import flatten_detail
from feedbackhub.errors import Conflict, FieldProblem, InvalidInput, NotFound, PayloadTooLarge
from loop import services as loop_services
from loop.api import serializers as api
from loop.api.filters import FeedbackFilter, PredictionFilter, ReviewTaskFilter
from loop.api.quality import counts_data, metrics_data, version_quality_data
from loop.api.schema import ApiKeyScheme  # noqa: F401  (registers the scheme with drf-spectacular)
from loop.api.single_events import recorded_body
from loop.models import TrainingRun
from loop.prioritize import label_queue
from reviews import selectors as review_selectors
from reviews import services as review_services
from reviews.insights import insights_for

# Statuses every operation can answer (400, 401, 403, 404, 413, 415, 503) are documented for all of them, with the
# one error shape, by loop.api.schema.document_errors; views declare only the errors particular to them.
EVENT_ID_CONFLICT = {409: OpenApiResponse(description="An event_id was reused with a different body.")}


class NewestFirstCursor(CursorPagination):
    ordering = "-id"
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000

    def decode_cursor(self, request: Request) -> Any:
        cursor = super().decode_cursor(request)
        if cursor is not None and cursor.position is not None and not str(cursor.position).lstrip("-").isdigit():
            raise DRFNotFound(self.invalid_cursor_message)  # hand-made cursors with a non-numeric position
        return cursor


def _reader(request: Request) -> services.Actor | None:
    """The scope of a read: a key's models, or everything for a staff session."""
    return selectors.actor_for_api_key(request.auth) if isinstance(request.auth, ApiKey) else None


def _writer(request: Request) -> services.Actor:
    return selectors.actor_for_api_key(request.auth)


def _model_named(request: Request, name: str, *, for_write: bool = False) -> RegisteredModel:
    actor = _writer(request) if for_write else _reader(request)
    model = selectors.registered_model_list(actor=actor).filter(name=name).first()
    if model is None:
        raise NotFound(f"no model named '{name}'", [FieldProblem("name", f"no model named '{name}'")])
    return model


def _one_or_many(
    request: Request,
    serializer_class: type[serializers.Serializer],
    fast: Callable[[Any], dict | None] | None = None,
) -> tuple[list[dict], bool]:
    """Validated items of a body holding one object or a list of them, and whether it was one object.

    `fast` validates the common shape of an item for less; where it returns None the serializer decides."""
    data = request.data
    if isinstance(data, dict):
        item = fast(data) if fast is not None else None
        if item is not None:
            return [item], True
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return [serializer.validated_data], True
    if not isinstance(data, list):
        problem = FieldProblem("body", "expected a JSON object or a list of objects")
        raise InvalidInput(f"body: {problem.message}", [problem])
    if not data:
        raise InvalidInput("body: send at least one item", [FieldProblem("body", "send at least one item")])
    limit = settings.FEEDBACKHUB_MAX_BATCH
    if len(data) > limit:
        message = f"a batch holds at most {limit} items, this one has {len(data)}"
        raise PayloadTooLarge(f"body: {message}", [FieldProblem("body", message)])
    if fast is not None:
        items = [fast(item) for item in data]
        if None not in items:
            return items, False
    serializer = serializer_class(data=data, many=True)
    serializer.is_valid(raise_exception=True)
    return list(serializer.validated_data), False


def _recorded_response(results: list[services.Recorded], single: bool) -> Response:
    rows = [recorded_body(recorded) for recorded in results]
    created = sum(1 for r in results if r.created)
    status = 201 if created else 200
    if single:
        return Response(rows[0], status=status)
    return Response({"created": created, "duplicates": len(results) - created, "results": rows}, status=status)


def _one_or_many_schema(name: str, item: type[serializers.Serializer]) -> PolymorphicProxySerializer:
    return PolymorphicProxySerializer(
        component_name=name, serializers=[item, item(many=True)], resource_type_field_name=None, many=False
    )


def _one_or_batch_schema(name: str, one: type, batch: type) -> PolymorphicProxySerializer:
    return PolymorphicProxySerializer(component_name=name, serializers=[one, batch], resource_type_field_name=None)


class PredictionsView(generics.ListAPIView):
    serializer_class = api.PredictionSerializer
    filterset_class = PredictionFilter
    pagination_class = NewestFirstCursor

    def get_queryset(self):  # noqa: ANN201
        return selectors.prediction_list(actor=_reader(self.request))

    @extend_schema(
        summary="Record predictions",
        description=(
            "One prediction object or a list of up to FEEDBACKHUB_MAX_BATCH (1000). A list is stored all or "
            "nothing. A retry with a stored `event_id` and the same body returns the original id with status "
            "`duplicate`; the same `event_id` with a different body is a 409. Unknown models and versions are "
            "registered on first use unless FEEDBACKHUB_AUTO_REGISTER=false."
        ),
        request=_one_or_many_schema("PredictionInOneOrMany", api.PredictionInSerializer),
        responses={
            201: _one_or_batch_schema("RecordedOneOrBatch", api.RecordedSerializer, api.RecordedBatchSerializer),
            200: OpenApiResponse(description="Every item was already stored (a retry)."),
            **EVENT_ID_CONFLICT,
        },
    )
    def post(self, request: Request) -> Response:
        items, single = _one_or_many(request, api.PredictionInSerializer, api.prediction_in_fast)
        if single:
            item = services.PredictionIn(**items[0])
            recorded = services.prediction_record(item=item, actor=_writer(request), parsed_storable=True)
            return _recorded_response([recorded], single)
        results = services.prediction_record_batch(
            items=[services.PredictionIn(**item) for item in items], actor=_writer(request), parsed_storable=True
        )
        return _recorded_response(results, single)


class PredictionDetailView(generics.RetrieveAPIView):
    serializer_class = api.PredictionSerializer

    def get_queryset(self):  # noqa: ANN201
        return selectors.prediction_list(actor=_reader(self.request))


def _prediction_id(raw: int) -> int:
    if raw > api.MAX_ID:
        raise NotFound(f"no prediction with id {raw}", [FieldProblem("prediction_id", f"no prediction with id {raw}")])
    return raw


def _outcome_rows(results: list[services.OutcomeResult]) -> list[dict[str, Any]]:
    return [{"prediction_id": r.prediction_id, "event_id": r.event_id, "status": r.status} for r in results]


class PredictionOutcomeView(APIView):
    @extend_schema(
        summary="Record the real outcome of one prediction",
        description="Setting a different outcome later is recorded with who, when and the previous value.",
        request=api.OutcomeValueSerializer,
        responses={
            200: api.OutcomeResultSerializer,
            404: OpenApiResponse(description="No such prediction."),
        },
    )
    def post(self, request: Request, pk: int) -> Response:
        serializer = api.OutcomeValueSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        item = services.OutcomeIn(actual=serializer.validated_data["actual"], prediction_id=_prediction_id(pk))
        results = services.outcome_record_batch(items=[item], actor=_writer(request), single=True)
        return Response(_outcome_rows(results)[0])


class OutcomesView(APIView):
    @extend_schema(
        summary="Record real outcomes by prediction id or event_id",
        description=(
            "One object or a list, all or nothing. An outcome whose event_id has no prediction yet is kept as "
            "`pending` and applied when the prediction arrives."
        ),
        request=_one_or_many_schema("OutcomeInOneOrMany", api.OutcomeInSerializer),
        responses={
            200: _one_or_batch_schema(
                "OutcomeResultOneOrBatch", api.OutcomeResultSerializer, api.OutcomeBatchSerializer
            ),
            202: OpenApiResponse(description="The prediction has not arrived yet; the outcome waits for it."),
            404: OpenApiResponse(description="No prediction with that id."),
        },
    )
    def post(self, request: Request) -> Response:
        items, single = _one_or_many(request, api.OutcomeInSerializer)
        results = services.outcome_record_batch(
            items=[services.OutcomeIn(**item) for item in items], actor=_writer(request), single=single
        )
        rows = _outcome_rows(results)
        if single:
            return Response(rows[0], status=202 if rows[0]["status"] == "pending" else 200)
        return Response({"results": rows})


class FeedbackView(generics.ListAPIView):
    serializer_class = api.FeedbackSerializer
    filterset_class = FeedbackFilter
    pagination_class = NewestFirstCursor

    def get_queryset(self):  # noqa: ANN201
        return selectors.feedback_list(actor=_reader(self.request))

    @extend_schema(
        summary="Record human feedback",
        description=(
            "thumbs_up, thumbs_down, correction (value: the corrected output), rating (value: 1-5) or comment, "
            "on a prediction (prediction_id or prediction_event_id) or an interaction_id. One object or a list."
        ),
        request=_one_or_many_schema("FeedbackInOneOrMany", api.FeedbackInSerializer),
        responses={
            201: _one_or_batch_schema(
                "FeedbackRecordedOneOrBatch", api.RecordedSerializer, api.RecordedBatchSerializer
            ),
            200: OpenApiResponse(description="Every item was already stored (a retry)."),
            404: OpenApiResponse(description="No prediction with that id."),
            **EVENT_ID_CONFLICT,
        },
    )
    def post(self, request: Request) -> Response:
        items, single = _one_or_many(request, api.FeedbackInSerializer)
        results = services.feedback_record_batch(
            items=[services.FeedbackIn(**item) for item in items], actor=_writer(request), single=single
        )
        review_services.review_triggers_evaluate(feedback_ids=[result.id for result in results])
        return _recorded_response(results, single)


class RegisteredModelsView(generics.ListAPIView):
    serializer_class = api.RegisteredModelSerializer
    pagination_class = None

    def get_queryset(self):  # noqa: ANN201
        return selectors.registered_model_list(actor=_reader(self.request))


class LogFeedbackView(APIView):
    """The seed logger's endpoint, kept so existing clients work unchanged."""

    @extend_schema(
        summary="Log a prediction (seed-compatible)",
        description="`latency` is in seconds. Stored like `POST /api/v1/predictions/`.",
        request=api.LogFeedbackInSerializer,
        responses={201: api.LogFeedbackOutSerializer, 200: api.LogFeedbackOutSerializer, **EVENT_ID_CONFLICT},
    )
    def post(self, request: Request) -> Response:
        serializer = api.LogFeedbackInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        item = services.PredictionIn(
            model=data["model"],
            version=data["model_version"],
            input=data["input_data"],
            prediction=data["prediction"],
            actual=data["actual_value"],
            latency_ms=data["latency"] * 1000.0,
            confidence=data["confidence_score"],
            interaction_id=data["interaction_id"],
            event_id=data.get("event_id", ""),
        )
        result = services.prediction_record(item=item, actor=_writer(request), source=IngestSource.LOG_FEEDBACK)
        body = {"message": "Feedback logged successfully", "id": result.id}
        return Response(body, status=201 if result.created else 200)


class SeedFeedbackView(APIView):
    """The seed monitor's endpoint: a binary prediction with its outcome, answered with the updated counts."""

    @extend_schema(
        summary="Count a binary prediction and its outcome (seed-compatible)",
        description=(
            "`prediction` and `actual` must each be the number 0 or 1. Counts go to `model` (default: "
            "FEEDBACKHUB_DEFAULT_MODEL) and `version` (default `unversioned`), which must be binary."
        ),
        request=api.SeedFeedbackInSerializer,
        responses={200: api.SeedFeedbackOutSerializer, **EVENT_ID_CONFLICT},
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict):
            problem = FieldProblem("body", "expected a JSON object with prediction and actual")
            raise InvalidInput(f"body: {problem.message}", [problem])
        serializer = api.SeedFeedbackInSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        services.binary_outcome_record(
            model=data["model"],
            version=data["version"],
            prediction=data["prediction"],
            actual=data["actual"],
            event_id=data.get("event_id", ""),
            actor=_writer(request),
        )
        model = selectors.registered_model_list(actor=None).get(
            name=data["model"] or settings.FEEDBACKHUB_DEFAULT_MODEL
        )
        [quality] = selectors.quality_list(registered_model=model, version=data["version"], with_windows=False)
        body = {
            "model": quality.model,
            "version": quality.version,
            "counts": counts_data(quality),
            "metrics": metrics_data(quality),
        }
        return Response(body)


class ModelMetricsView(APIView):
    @extend_schema(
        summary="Quality of a model, per version",
        description=(
            "Counts, accuracy/precision/recall/F1 (or MAE/RMSE), per-class scores and rolling windows "
            "(the last FEEDBACKHUB_WINDOW_OUTCOMES outcomes and the last hour), from counters kept at write time; "
            "the estimated accuracy of predictions awaiting their outcome (mean confidence) beside the confidence and "
            "accuracy of those with one; the version's latest drift check."
        ),
        parameters=[OpenApiParameter("version", str, description="Only this version.")],
        responses={200: api.ModelQualitySerializer, 404: OpenApiResponse(description="No such model or version.")},
    )
    def get(self, request: Request, name: str) -> Response:
        model = _model_named(request, name)
        version = request.query_params.get("version")
        if version is not None and not model.versions.filter(version=version).exists():
            message = f"model '{name}' has no version '{version}'"
            raise NotFound(message, [FieldProblem("version", message)])
        qualities = selectors.quality_list(registered_model=model, version=version)
        drift_checks = selectors.latest_drift_checks(registered_model=model)
        body = {
            "model": model.name,
            "task_type": model.task_type,
            "versions": [version_quality_data(quality, drift_checks.get(quality.version)) for quality in qualities],
        }
        return Response(body)


class ExportFormatNegotiation(DefaultContentNegotiation):
    """`?format=` names the export's file type here, not an API renderer."""

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None) -> tuple:
        return renderers[0], renderers[0].media_type


class PredictionExportView(APIView):
    content_negotiation_class = ExportFormatNegotiation
    media_types = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson; charset=utf-8"}

    @extend_schema(
        summary="Export predictions as CSV or JSON Lines",
        description="Streams every matching prediction (oldest first) with the same filters as the list.",
        parameters=[
            OpenApiParameter("format", str, enum=list(FORMATS), description="csv (default) or jsonl"),
            OpenApiParameter("model", str),
            OpenApiParameter("version", str),
            OpenApiParameter("since", OpenApiTypes.DATETIME),
            OpenApiParameter("until", OpenApiTypes.DATETIME),
            OpenApiParameter("labelled", bool),
            OpenApiParameter("errors_only", bool),
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/x-ndjson"): OpenApiTypes.STR},
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        format_name = request.query_params.get("format", "csv")
        if format_name not in FORMATS:
            problem = FieldProblem("format", f"is one of {', '.join(FORMATS)}")
            raise InvalidInput(f"format: {problem.message}", [problem])
        filters = PredictionFilter(request.query_params, queryset=selectors.prediction_list(actor=_reader(request)))
        if not filters.is_valid():
            raise serializers.ValidationError(filters.errors)
        response = StreamingHttpResponse(
            export_lines(format_name, export_rows(filters.qs)), content_type=self.media_types[format_name]
        )
        response["Content-Disposition"] = f'attachment; filename="predictions.{format_name}"'
        return response


class KnowledgeView(generics.ListAPIView):
    """The current version of every knowledge-base entry (what the AI application should know)."""

    serializer_class = api.KnowledgeEntrySerializer
    pagination_class = None

    @extend_schema(parameters=[OpenApiParameter("model", str, description="Only this model's entries.")])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):  # noqa: ANN201
        return review_selectors.knowledge_current(
            models=selectors.registered_model_list(actor=_reader(self.request)),
            model_name=self.request.query_params.get("model"),
        )


class ActiveInstructionView(APIView):
    @extend_schema(
        summary="The model's active instructions (its prompt)",
        responses={200: api.InstructionSerializer, 404: OpenApiResponse(description="No model, or no instructions.")},
    )
    def get(self, request: Request, name: str) -> Response:
        model = selectors.registered_model_list(actor=_reader(request)).filter(name=name).first()
        instruction = review_selectors.instruction_active(registered_model=model) if model else None
        if instruction is None:
            message = f"model '{name}' has no active instructions" if model else f"no model named '{name}'"
            raise NotFound(message, [FieldProblem("name", message)])
        return Response(api.InstructionSerializer(instruction).data)


class ReviewTasksView(generics.ListAPIView):
    """Review tasks, for integrations (work them in the admin)."""

    serializer_class = api.ReviewTaskSerializer
    filterset_class = ReviewTaskFilter
    pagination_class = NewestFirstCursor

    def get_queryset(self):  # noqa: ANN201
        return review_selectors.review_task_list(models=selectors.registered_model_list(actor=_reader(self.request)))


class InsightsView(APIView):
    @extend_schema(
        summary="Improvement insights from human feedback",
        description=(
            "Totals and positive rate over the last `days`, common issues (clusters of negative feedback), "
            "improvement opportunities (worst interactions and inputs, corrections awaiting approval) and user "
            "corrections. A key limited to some models must name one of them."
        ),
        parameters=[
            OpenApiParameter("model", str, description="One model; all models when omitted."),
            OpenApiParameter("days", int, description="Period length, 1 to 3650 (default 30)."),
        ],
        responses={200: OpenApiTypes.OBJECT, 404: OpenApiResponse(description="No model of that name.")},
    )
    def get(self, request: Request) -> Response:
        days_text = request.query_params.get("days", "30")
        if not (days_text.isascii() and days_text.isdigit()) or not 1 <= int(days_text) <= 3650:
            problem = FieldProblem("days", "is a whole number of days from 1 to 3650")
            raise InvalidInput(f"days: {problem.message}", [problem])
        actor = _reader(request)
        name = request.query_params.get("model")
        model = None
        if name:
            model = selectors.registered_model_list(actor=actor).filter(name=name).first()
            if model is None:
                raise NotFound(f"no model named '{name}'", [FieldProblem("model", f"no model named '{name}'")])
        elif actor is not None and actor.allowed_model_ids is not None:
            problem = FieldProblem("model", "this API key is limited to some models: name one of them")
            raise InvalidInput(f"model: {problem.message}", [problem])
        return Response(insights_for(registered_model=model, days=int(days_text)).as_dict())


class ExamplesView(APIView):
    @extend_schema(
        summary="Add labelled training examples (seed 001)",
        description='`{"input": ..., "target": ...}` or a list of them; they count toward the retrain threshold.',
        request=_one_or_many_schema("ExampleInOneOrMany", api.ExampleInSerializer),
        responses={201: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request, name: str) -> Response:
        model = _model_named(request, name, for_write=True)
        try:
            items, single = _one_or_many(request, api.ExampleInSerializer)
        except serializers.ValidationError as error:
            problems = _validation_problems(error)
            raise InvalidInput(
                f"Invalid feedback format: {problems[0].field} {problems[0].message}", problems
            ) from None
        ids = loop_services.examples_record(
            registered_model=model,
            items=[loop_services.ExampleIn(**item) for item in items],
            actor=_writer(request),
            single=single,
        )
        return Response({"created": len(ids), "ids": ids}, status=201)


def _validation_problems(error: serializers.ValidationError) -> list[FieldProblem]:
    return flatten_detail(error.detail)


class RetrainView(APIView):
    @extend_schema(
        summary="Retrain now",
        request=None,
        responses={
            202: api.TrainingRunSerializer,
            409: OpenApiResponse(description="A run is already queued or running."),
        },
    )
    def post(self, request: Request, name: str) -> Response:
        run, created = loop_services.retrain_request(
            registered_model=_model_named(request, name, for_write=True), trigger="api"
        )
        if not created:
            message = f"run {run.pk} is already {run.status}; see /api/v1/training-runs/{run.pk}/"
            raise Conflict(message, [FieldProblem("name", message)])
        return Response(api.TrainingRunSerializer(run).data, status=202)


class TrainingRunView(generics.RetrieveAPIView):
    serializer_class = api.TrainingRunSerializer

    def get_queryset(self):  # noqa: ANN201
        models = selectors.registered_model_list(actor=_reader(self.request))
        return TrainingRun.objects.filter(registered_model__in=models).select_related(
            "registered_model", "candidate_version"
        )


class RollbackView(APIView):
    @extend_schema(
        summary="Make the previous champion the champion again",
        request=None,
        responses={200: OpenApiTypes.OBJECT, 409: OpenApiResponse(description="No previous champion to go back to.")},
    )
    def post(self, request: Request, name: str) -> Response:
        promotion = loop_services.champion_rollback(
            registered_model=_model_named(request, name, for_write=True), actor=_writer(request).label
        )
        return Response({"champion": promotion.model_version.version, "previous": promotion.previous_version.version})


class VersionsView(APIView):
    @extend_schema(
        summary="A model's versions, with the champion marked", responses={200: api.ModelVersionSerializer(many=True)}
    )
    def get(self, request: Request, name: str) -> Response:
        model = _model_named(request, name)
        champion = loop_services.current_champion(model)
        rows = []
        for version in model.versions.select_related("artifact").order_by("-created_at"):
            artifact = getattr(version, "artifact", None)
            rows.append(
                {
                    "version": version.version,
                    "created_at": version.created_at,
                    "champion": champion is not None and champion.pk == version.pk,
                    "trained_by_hub": artifact is not None,
                    "sha256": artifact.sha256 if artifact else None,
                    "metrics": artifact.metrics if artifact else None,
                }
            )
        return Response(rows)


class LabelQueueView(APIView):
    @extend_schema(
        summary="Unlabelled predictions to label first",
        description=(
            "score = 0.5 × uncertainty + 0.4 × disagreement with user feedback + 0.1 × drift; see the README. "
            "Only the 5,000 most recent unlabelled predictions are scored."
        ),
        parameters=[OpenApiParameter("limit", int, description="1 to 500 (default 50).")],
        responses={200: api.LabelQueueItemSerializer(many=True)},
    )
    def get(self, request: Request, name: str) -> Response:
        model = _model_named(request, name)
        limit_text = request.query_params.get("limit", "50")
        if not (limit_text.isascii() and limit_text.isdigit()) or not 1 <= int(limit_text) <= 500:
            problem = FieldProblem("limit", "is a whole number from 1 to 500")
            raise InvalidInput(f"limit: {problem.message}", [problem])
        queue = label_queue(registered_model=model, limit=int(limit_text))
        rows = Prediction.objects.in_bulk([item.prediction_id for item in queue])
        return Response(
            [
                {
                    **asdict(item),
                    "input": rows[item.prediction_id].input,
                    "prediction": rows[item.prediction_id].prediction,
                    "created_at": rows[item.prediction_id].created_at,
                }
                for item in queue
            ]
        )


class PredictView(APIView):
    @extend_schema(
        summary="Predict with the current champion",
        description="The prediction is recorded like any other (masking included), with its event_id.",
        request=_one_or_many_schema("PredictInOneOrMany", api.PredictInSerializer),
        responses={
            200: _one_or_many_schema("PredictOutOneOrMany", api.PredictOutSerializer),
            409: OpenApiResponse(description="The model has no champion trained by the hub yet."),
        },
    )
    def post(self, request: Request, name: str) -> Response:
        model = _model_named(request, name, for_write=True)
        items, single = _one_or_many(request, api.PredictInSerializer)
        rows = loop_services.champion_predict(
            registered_model=model, inputs=[item["input"] for item in items], actor=_writer(request)
        )
        return Response(rows[0] if single else rows)
