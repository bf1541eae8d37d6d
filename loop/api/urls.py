from django.urls import path

from loop.api import views

app_name = "api"

urlpatterns = [
    path("models/", views.RegisteredModelsView.as_view(), name="models"),
    path("models/<str:name>/metrics/", views.ModelMetricsView.as_view(), name="model-metrics"),
    path("predictions/", views.PredictionsView.as_view(), name="predictions"),
    path("predictions/export/", views.PredictionExportView.as_view(), name="prediction-export"),
    path("predictions/<int:pk>/", views.PredictionDetailView.as_view(), name="prediction-detail"),
    path("predictions/<int:pk>/outcome/", views.PredictionOutcomeView.as_view(), name="prediction-outcome"),
    path("outcomes/", views.OutcomesView.as_view(), name="outcomes"),
    path("feedback/", views.FeedbackView.as_view(), name="feedback"),
    path("knowledge/", views.KnowledgeView.as_view(), name="knowledge"),
    path("models/<str:name>/instructions/active/", views.ActiveInstructionView.as_view(), name="instructions-active"),
    path("review-tasks/", views.ReviewTasksView.as_view(), name="review-tasks"),
    path("insights/", views.InsightsView.as_view(), name="insights"),
    path("models/<str:name>/examples/", views.ExamplesView.as_view(), name="model-examples"),
    path("models/<str:name>/retrain/", views.RetrainView.as_view(), name="model-retrain"),
    path("models/<str:name>/rollback/", views.RollbackView.as_view(), name="model-rollback"),
    path("models/<str:name>/versions/", views.VersionsView.as_view(), name="model-versions"),
    path("models/<str:name>/predict/", views.PredictView.as_view(), name="model-predict"),
    path("models/<str:name>/label-queue/", views.LabelQueueView.as_view(), name="model-label-queue"),
    path("training-runs/<int:pk>/", views.TrainingRunView.as_view(), name="training-run"),
]
