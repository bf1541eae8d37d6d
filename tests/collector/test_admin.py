import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from collector.admin import CappedCountPaginator
from collector.models import ApiKey, Prediction
from collector.services import api_key_create
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client_with_data(api: ApiClient) -> Client:
    api.post_json("/api/v1/predictions/", [prediction_body(event_id=f"e{n}", actual=n % 2) for n in range(5)])
    prediction_id = api.post_json("/api/v1/predictions/", prediction_body(event_id="fresh")).json()["id"]
    api.post_json("/api/v1/outcomes/", {"prediction_id": prediction_id, "actual": 0})
    api.post_json("/api/v1/feedback/", {"kind": "thumbs_down", "prediction_id": prediction_id, "comment": "no"})
    user = get_user_model().objects.create_superuser("root", password="unused-password")
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/collector/prediction/",
        "/admin/collector/prediction/?registered_model__id__exact=1&is_correct__exact=0",
        "/admin/collector/prediction/?q=e1",
        "/admin/collector/feedback/",
        "/admin/collector/registeredmodel/",
        "/admin/collector/modelversion/",
        "/admin/collector/apikey/",
        "/admin/collector/apikey/add/",
        "/admin/collector/pendingoutcome/",
    ],
)
def test_admin_pages_load(admin_client_with_data: Client, path: str) -> None:
    assert admin_client_with_data.get(path).status_code == 200


def test_a_prediction_page_shows_outcome_history_and_feedback_read_only(admin_client_with_data: Client) -> None:
    prediction = Prediction.objects.filter(outcome_revisions__isnull=False).get()

    page = admin_client_with_data.get(f"/admin/collector/prediction/{prediction.pk}/change/").content.decode()

    assert "key:test-service" in page
    assert "thumbs_down" in page or "Thumbs down" in page
    assert 'name="prediction"' not in page  # model output is not editable


def test_the_list_paginator_never_counts_past_its_cap(api: ApiClient) -> None:
    api.post_json("/api/v1/predictions/", [prediction_body() for _ in range(30)])
    CappedCountPaginator.CAP = 10
    try:
        assert CappedCountPaginator(Prediction.objects.all(), 5).count == 11
    finally:
        CappedCountPaginator.CAP = 10_000


def test_revoking_keys_from_the_admin(admin_client_with_data: Client) -> None:
    key, raw = api_key_create(name="to-revoke")

    response = admin_client_with_data.post(
        "/admin/collector/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True
    )

    assert "Revoked 1 API key" in response.content.decode()
    assert ApiClient(raw).get("/api/v1/predictions/").status_code == 401


def test_adding_a_key_in_the_admin_shows_it_once(admin_client_with_data: Client) -> None:
    response = admin_client_with_data.post("/admin/collector/apikey/add/", {"name": "from-admin"}, follow=True)

    page = response.content.decode()
    raw = page.split("will not be shown again: ")[1].split("<")[0].strip()
    assert ApiKey.objects.filter(name="from-admin").count() == 1
    assert ApiClient(raw).get("/api/v1/predictions/").status_code == 200
