import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from collector.models import ApiKey, Prediction, RegisteredModel
from collector.services import api_key_create, api_key_revoke
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db
URL = "/api/v1/predictions/"
# Every endpoint against every refused credential: tests/security/test_auth_matrix.py.


@pytest.mark.parametrize(
    "header",
    ["Bearer wrong", "Bearer fbh_000000000000_nope", "Bearer", "Bearer a b", "Bearer \u00e9t\u00e9"],
)
def test_a_wrong_key_is_refused_and_nothing_is_written(header: str) -> None:
    client = ApiClient(HTTP_AUTHORIZATION=header)

    response = client.post_json(URL, prediction_body())

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert Prediction.objects.count() == 0


def test_a_revoked_key_is_refused(api_key: tuple[ApiKey, str]) -> None:
    assert api_key_revoke(api_key=api_key[0]) is True

    response = ApiClient(api_key[1]).post_json(URL, prediction_body())

    assert response.status_code == 401
    assert Prediction.objects.count() == 0
    assert api_key_revoke(api_key=api_key[0]) is False


def test_keys_are_stored_hashed(api_key: tuple[ApiKey, str]) -> None:
    stored, raw = api_key
    stored.refresh_from_db()

    assert raw not in str(ApiKey.objects.values().get())
    assert stored.key_sha256 == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(f"fbh_{stored.prefix}_")


def test_using_a_key_records_when_it_was_last_used(api: ApiClient, api_key: tuple[ApiKey, str]) -> None:
    api.get(URL)

    api_key[0].refresh_from_db()
    assert api_key[0].last_used_at is not None


def test_a_key_scoped_to_another_model_may_not_write_to_it() -> None:
    RegisteredModel.objects.create(name="churn", task_type="binary")
    _, raw = api_key_create(name="fraud-only", model_names=["fraud"])

    response = ApiClient(raw).post_json(URL, [prediction_body(model="fraud"), prediction_body(model="churn")])

    assert response.status_code == 403
    assert response.json()["error"]["fields"] == [
        {"field": "[1].model", "message": "this API key may not write to model 'churn'"}
    ]
    assert Prediction.objects.count() == 0


def test_a_scoped_key_may_not_register_new_models() -> None:
    _, raw = api_key_create(name="fraud-only", model_names=["fraud"])

    response = ApiClient(raw).post_json(URL, prediction_body(model="brand-new"))

    assert response.status_code == 403
    assert not RegisteredModel.objects.filter(name="brand-new").exists()


def test_a_scoped_key_writes_and_reads_only_its_models(api: ApiClient) -> None:
    api.post_json(URL, [prediction_body(model="fraud"), prediction_body(model="churn")])
    _, raw = api_key_create(name="fraud-only", model_names=["fraud"])
    scoped = ApiClient(raw)

    assert scoped.post_json(URL, prediction_body(model="fraud")).status_code == 201
    assert {row["model"] for row in scoped.get(URL).json()["results"]} == {"fraud"}
    churn_id = Prediction.objects.get(registered_model__name="churn").pk
    assert scoped.get(f"{URL}{churn_id}/").status_code == 404
    assert [m["name"] for m in scoped.get("/api/v1/models/").json()] == ["fraud"]


def test_a_staff_session_may_read_but_not_write(api: ApiClient, staff_client: ApiClient) -> None:
    api.post_json(URL, prediction_body())

    assert staff_client.get(URL).status_code == 200
    response = staff_client.post_json(URL, prediction_body())
    assert response.status_code == 403
    assert "API key" in response.json()["error"]["message"]
    assert Prediction.objects.count() == 1


def test_last_used_is_written_at_most_once_a_minute(api: ApiClient, api_key: tuple[ApiKey, str]) -> None:
    recently = timezone.now() - timedelta(seconds=30)
    ApiKey.objects.filter(pk=api_key[0].pk).update(last_used_at=recently)
    assert api.get(URL).status_code == 200
    api_key[0].refresh_from_db()
    assert api_key[0].last_used_at == recently

    long_ago = timezone.now() - timedelta(minutes=2)
    ApiKey.objects.filter(pk=api_key[0].pk).update(last_used_at=long_ago)
    assert api.get(URL).status_code == 200
    api_key[0].refresh_from_db()
    assert api_key[0].last_used_at > recently


def test_a_revoked_key_is_refused_at_once(api: ApiClient, api_key: tuple[ApiKey, str]) -> None:
    assert api.get(URL).status_code == 200

    api_key_revoke(api_key=api_key[0])

    assert api.get(URL).status_code == 401
