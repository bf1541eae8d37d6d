import json
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from collector.models import ApiKey
from collector.services import api_key_create


@pytest.fixture(autouse=True, scope="session")
def _plain_static_storage() -> None:
    # The manifest storage needs `collectstatic`; tests render pages without it.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _test_hosts(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]


class ApiClient(Client):
    """A Django test client that speaks JSON and sends an API key."""

    def __init__(self, raw_key: str | None = None, **defaults: Any) -> None:
        if raw_key:
            defaults["HTTP_AUTHORIZATION"] = f"Bearer {raw_key}"
        super().__init__(**defaults)

    def post_json(self, path: str, body: Any) -> Any:
        return self.post(path, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def api_key() -> tuple[ApiKey, str]:
    return api_key_create(name="test-service")


@pytest.fixture
def api(api_key: tuple[ApiKey, str]) -> ApiClient:
    """A client holding a key for every model."""
    return ApiClient(api_key[1])


@pytest.fixture
def anonymous() -> ApiClient:
    return ApiClient()


@pytest.fixture
def staff_client(django_user_model: Any) -> ApiClient:
    user = django_user_model.objects.create_user("staff", password="unused-password", is_staff=True)
    client = ApiClient()
    client.force_login(user)
    return client


def prediction_body(**overrides: Any) -> dict[str, Any]:
    body = {"model": "churn", "version": "v1", "input": {"tenure": 3, "plan": "basic"}, "prediction": 1}
    body.update(overrides)
    return body
