"""A single prediction from an all-models key that authenticated in this process within the last minute takes the key
from memory: its write confirms, in its own transaction, that the key is still active and unscoped, and a key revoked
or scoped since writes nothing and gets the answer DRF gives with the key read from the database.

Real transactions (on PostgreSQL the write is then the pipelined one), with the key changed as another process or
the admin would change it: in the database only, behind this process's memory."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from collector import services
from collector.models import ApiKey, Prediction, RegisteredModel
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db(transaction=True)
URL = "/api/v1/predictions/"


@pytest.fixture(autouse=True)
def _nothing_remembered() -> Iterator[None]:
    # Earlier tests' models and keys are gone, and their ids are given again to these tests' rows.
    services._recent_keys.clear()
    services._known_versions.models.clear()
    services._known_versions.versions.clear()
    yield
    services._recent_keys.clear()


@pytest.fixture
def key() -> tuple[ApiKey, ApiClient]:
    api_key, raw_key = services.api_key_create(name="svc")
    return api_key, ApiClient(raw_key)


def post(client: ApiClient, **fields: Any) -> Any:
    return client.post(URL, data=json.dumps(prediction_body(**fields)), content_type="application/json")


def key_reads(queries: CaptureQueriesContext) -> int:
    return sum('"last_used_at" IS NOT NULL' in query["sql"] for query in queries.captured_queries)


def key_confirmations(queries: CaptureQueriesContext) -> int:
    return sum('AND "all_models"' in query["sql"] for query in queries.captured_queries)


def test_a_key_used_lately_is_confirmed_by_the_write_instead_of_read(key: tuple[ApiKey, ApiClient]) -> None:
    _, client = key
    with CaptureQueriesContext(connection) as first:
        assert post(client, event_id="e-1").status_code == 201
    with CaptureQueriesContext(connection) as second:
        assert post(client, event_id="e-2").status_code == 201

    assert (key_reads(first), key_confirmations(first)) == (1, 0)
    assert (key_reads(second), key_confirmations(second)) == (0, 1)
    assert sorted(Prediction.objects.values_list("event_id", flat=True)) == ["e-1", "e-2"]


def test_a_key_revoked_since_it_was_remembered_writes_nothing(key: tuple[ApiKey, ApiClient]) -> None:
    api_key, client = key
    assert post(client, event_id="e-1").status_code == 201
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())

    new_event = post(client, event_id="e-2")
    retry = post(client, event_id="e-1")
    bad_input = post(client, event_id="e-3", confidence=7)

    assert [new_event.status_code, retry.status_code, bad_input.status_code] == [401, 401, 401]
    assert new_event.json()["error"]["code"] == "authentication_failed"
    assert list(Prediction.objects.values_list("event_id", flat=True)) == ["e-1"]


def test_a_throttled_request_with_a_key_revoked_since_it_was_remembered_gets_401(
    key: tuple[ApiKey, ApiClient], settings: Any
) -> None:
    api_key, client = key
    assert post(client, event_id="e-1").status_code == 201  # remembered while writes are not limited
    settings.FEEDBACKHUB_WRITE_RATE = "2/min"
    assert post(client, event_id="e-2").status_code == 201
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())

    throttled = post(client, event_id="e-3")
    with CaptureQueriesContext(connection) as next_request:
        again = post(client, event_id="e-4")

    assert (throttled.status_code, again.status_code) == (401, 401)
    assert key_confirmations(next_request) == 0  # forgotten: read from the database
    assert sorted(Prediction.objects.values_list("event_id", flat=True)) == ["e-1", "e-2"]


def test_a_remembered_key_whose_row_now_holds_another_key_writes_nothing(key: tuple[ApiKey, ApiClient]) -> None:
    api_key, client = key
    assert post(client, event_id="e-1").status_code == 201
    # As after a restore or an emptied table: the id is another key's now.
    ApiKey.objects.filter(pk=api_key.pk).update(key_sha256=services.api_key_hash("another key"))

    assert post(client, event_id="e-2").status_code == 401
    assert list(Prediction.objects.values_list("event_id", flat=True)) == ["e-1"]


def test_a_key_scoped_since_it_was_remembered_is_held_to_its_scope(key: tuple[ApiKey, ApiClient]) -> None:
    api_key, client = key
    assert post(client, event_id="e-1", model="churn").status_code == 201
    ApiKey.objects.filter(pk=api_key.pk).update(all_models=False)
    api_key.allowed_models.set([RegisteredModel.objects.create(name="fraud", task_type="binary")])

    response = post(client, event_id="e-2", model="churn")

    assert response.status_code == 403
    assert list(Prediction.objects.values_list("event_id", flat=True)) == ["e-1"]
    assert post(client, event_id="e-3", model="fraud").status_code == 201


def test_an_error_answer_confirms_a_remembered_key(key: tuple[ApiKey, ApiClient]) -> None:
    _, client = key
    assert post(client, event_id="e-1").status_code == 201

    with CaptureQueriesContext(connection) as queries:
        conflict = post(client, event_id="e-1", prediction=0)

    assert conflict.status_code == 409
    assert key_reads(queries) == 0
    assert key_confirmations(queries) >= 1


def test_a_scoped_key_is_read_on_every_request() -> None:
    services.api_key_create(name="owner", model_names=["churn"])
    _, raw_key = services.api_key_create(name="scoped", model_names=["churn"])
    client = ApiClient(raw_key)

    with CaptureQueriesContext(connection) as queries:
        for n in range(3):
            assert post(client, event_id=f"e-{n}", model="churn").status_code == 201

    assert key_reads(queries) == 3
    assert key_confirmations(queries) == 0


def test_a_key_is_read_again_after_a_minute(key: tuple[ApiKey, ApiClient]) -> None:
    api_key, client = key
    assert post(client, event_id="e-1").status_code == 201
    ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=timezone.now() - timezone.timedelta(minutes=5))
    [(digest, (remembered, _))] = services._recent_keys.items()
    services._recent_keys[digest] = (remembered, 0.0)  # as it stands a minute later

    with CaptureQueriesContext(connection) as queries:
        assert post(client, event_id="e-2").status_code == 201

    assert key_reads(queries) == 1
    api_key.refresh_from_db()
    assert timezone.now() - api_key.last_used_at < timezone.timedelta(minutes=1)
