from django.apps import AppConfig


class LoopConfig(AppConfig):
    name = "loop"
    verbose_name = "Improvement loop"

    def ready(self) -> None:
        # Loading the Celery app here (not in feedbackhub/__init__.py) makes it the current app in every
        # web process, while `feedbackhub.client` stays importable without Django or Celery.
        import feedbackhub.celery  # noqa: F401
