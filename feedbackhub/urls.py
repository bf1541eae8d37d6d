from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from collector.metrics import metrics_view
from loop.api.views import LogFeedbackView, SeedFeedbackView
from loop.dashboard import ModelDashboardView, OverviewView

admin.site.site_header = "FeedbackHub"
admin.site.site_title = "FeedbackHub admin"
admin.site.index_title = "Predictions, feedback and reviews"
admin.site.site_url = "/"  # the admin's "View site" link opens the dashboard

urlpatterns = [
    path("", OverviewView.as_view(), name="dashboard"),
    path("models/<str:name>/", ModelDashboardView.as_view(), name="dashboard-model"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("loop.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("log-feedback", LogFeedbackView.as_view(), name="log-feedback"),
    path("feedback", SeedFeedbackView.as_view(), name="seed-feedback"),
    path("metrics", metrics_view, name="metrics"),
]

handler404 = "feedbackhub.api_errors.not_found"
handler500 = "feedbackhub.api_errors.server_error"
