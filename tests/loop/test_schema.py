from io import StringIO

import pytest
from django.core.management import call_command

from tests.conftest import ApiClient

pytestmark = pytest.mark.django_db


def test_the_openapi_schema_is_valid_and_complete(anonymous: ApiClient) -> None:
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=StringIO())

    schema = anonymous.get("/api/schema/?format=json").json()

    assert schema["openapi"].startswith("3.")
    assert {
        "/api/v1/predictions/",
        "/api/v1/predictions/{id}/outcome/",
        "/api/v1/outcomes/",
        "/api/v1/feedback/",
        "/api/v1/models/",
        "/log-feedback",
    } <= set(schema["paths"])
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"


def test_the_swagger_ui_is_served_without_a_cdn(anonymous: ApiClient) -> None:
    page = anonymous.get("/api/docs/").content.decode()

    assert "swagger-ui" in page
    assert "cdn" not in page.lower()
