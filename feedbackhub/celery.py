import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedbackhub.settings")

app = Celery("feedbackhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
