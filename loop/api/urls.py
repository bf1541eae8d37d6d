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
]
