"""Every API operation, from the OpenAPI schema, against every kind of refused credential.

A new endpoint shows up in the schema and fails `test_every_operation_is_classified` until it is added to SCOPED:
that table says what a key limited to another model gets there (403 when the body names the model, 404 when the
URL or the body looks a resource up by id or name, so that its existence does not leak; lists are filtered).
"""

import json
import re
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.generators import SchemaGenerator

from collector.models import RegisteredModel
from collector.services import api_key_create, api_key_revoke
from loop.models import TrainingRun
from reviews.models import Instruction, KnowledgeEntry, ReviewTask
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db
OTHER = "secret-model"  # the model the scoped key may not see; its name marks its rows in any response
FILTERED = "filtered"  # a list: 200, without the other model's rows

OPERATIONS = sorted(
    (method.upper(), path)
    for path, operations in SchemaGenerator().get_schema(request=None, public=True)["paths"].items()
    for method in operations
    if method != "parameters"
)

SCOPED: dict[tuple[str, str], tuple[dict[str, Any], int | str]] = {
    ("GET", "/api/v1/predictions/"): ({}, FILTERED),
    ("POST", "/api/v1/predictions/"): ({"body": prediction_body(model=OTHER, event_id="scoped")}, 403),
    ("GET", "/api/v1/predictions/{id}/"): ({}, 404),
    ("POST", "/api/v1/predictions/{id}/outcome/"): ({"body": {"actual": 0}}, 404),
    ("GET", "/api/v1/predictions/export/"): ({"query": {"format": "jsonl"}}, FILTERED),
    ("POST", "/api/v1/outcomes/"): ({"body": {"prediction_id": "{id}", "actual": 0}}, 404),
    ("GET", "/api/v1/feedback/"): ({}, FILTERED),
    ("POST", "/api/v1/feedback/"): ({"body": {"kind": "thumbs_up", "prediction_id": "{id}"}}, 404),
    ("GET", "/api/v1/models/"): ({}, FILTERED),
    ("GET", "/api/v1/models/{name}/metrics/"): ({}, 404),
    ("GET", "/api/v1/models/{name}/versions/"): ({}, 404),
    ("GET", "/api/v1/models/{name}/label-queue/"): ({}, 404),
    ("GET", "/api/v1/models/{name}/instructions/active/"): ({}, 404),
    ("POST", "/api/v1/models/{name}/examples/"): ({"body": {"input": {"x": 1}, "target": 1}}, 404),
    ("POST", "/api/v1/models/{name}/predict/"): ({"body": {"input": {"x": 1}}}, 404),
    ("POST", "/api/v1/models/{name}/retrain/"): ({}, 404),
    ("POST", "/api/v1/models/{name}/rollback/"): ({}, 404),
    ("GET", "/api/v1/training-runs/{id}/"): ({}, 404),
    ("GET", "/api/v1/knowledge/"): ({}, FILTERED),
    ("GET", "/api/v1/review-tasks/"): ({}, FILTERED),
    ("GET", "/api/v1/insights/"): ({"query": {"model": "{name}"}}, 404),
    ("POST", "/log-feedback"): (
        {"body": {"model": OTHER, "model_version": "v1", "input_data": "x", "prediction": "1", "latency": 0.1}},
        403,
    ),
    ("POST", "/feedback"): ({"body": {"model": OTHER, "prediction": 1, "actual": 1}}, 403),
}

# Not in the API schema, each for a reason; their access is tested below.
OUTSIDE_THE_API = {
    "/": "dashboard: staff login (the admin's), no API key",
    "/models/{name}/": "dashboard: staff login (the admin's), no API key",
    "/api/schema/": "open by design: the API's description holds no data",
    "/api/docs/": "open by design: Swagger UI for the schema",
    "/metrics": "open unless FEEDBACKHUB_METRICS_TOKEN is set (Prometheus scrapes it), then a bearer token",
}


@pytest.fixture
def world() -> dict[str, Any]:
    """Rows of the other model on every endpoint, and a key limited to a model of its own."""
    _, raw = api_key_create(name="everything")
    full = ApiClient(raw)
    created = full.post_json("/api/v1/predictions/", prediction_body(model=OTHER, interaction_id=f"{OTHER}-chat"))
    prediction_id = created.json()["id"]
    full.post_json("/api/v1/feedback/", {"kind": "thumbs_down", "prediction_id": prediction_id})
    model = RegisteredModel.objects.get(name=OTHER)
    KnowledgeEntry.objects.create(registered_model=model, topic="refunds", version=1, content="5 days")
    Instruction.objects.create(registered_model=model, version=1, content="Be brief.", is_active=True)
    ReviewTask.objects.create(registered_model=model, pattern_key="interaction:x", suggested_action="review")
    run = TrainingRun.objects.create(registered_model=model, trigger="api")
    _, scoped_raw = api_key_create(name="own-model-only", model_names=["own-model"])
    revoked_key, revoked_raw = api_key_create(name="revoked")
    api_key_revoke(api_key=revoked_key)
    return {
        "full": full,
        "scoped": ApiClient(scoped_raw),
        "revoked": revoked_raw,
        "ids": {"predictions": prediction_id, "training-runs": run.pk},
    }


def target(world: dict[str, Any]) -> dict[str, Any]:
    """What `{name}` and `{id}` stand for: the other model and its rows."""
    return {"name": OTHER, "ids": world["ids"]}


ABSENT = {"name": "absent-model", "ids": {"predictions": 999999, "training-runs": 999999}}


def send(client: ApiClient, method: str, path: str, request: dict[str, Any], aim: dict[str, Any]) -> Any:
    """The operation's request with `{name}` and `{id}` filled in (an id is a prediction's outside training runs)."""
    collection = path.split("/")[3] if path.startswith("/api/v1/training-runs/") else "predictions"
    resource_id = aim["ids"][collection]
    url = path.replace("{name}", aim["name"]).replace("{id}", str(resource_id))
    filled = json.loads(json.dumps(request).replace('"{id}"', str(resource_id)).replace("{name}", aim["name"]))
    if method == "GET":
        return client.get(url, filled.get("query", {}))
    return client.post_json(url, filled.get("body", {}))


def without_names(body: str, aim: dict[str, Any]) -> str:
    body = body.replace(aim["name"], "?")
    for resource_id in aim["ids"].values():
        body = re.sub(rf"\b{resource_id}\b", "?", body)
    return body


def text(response: Any) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


def row_counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


def assert_error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["status"] == status
    assert set(error) == {"status", "code", "message", "fields"}
    return error


def test_every_operation_is_classified() -> None:
    assert sorted(SCOPED) == OPERATIONS


def test_every_route_outside_the_admin_is_in_the_schema_or_listed_with_its_reason() -> None:
    def routes(patterns: list, prefix: str = "") -> list[str]:
        found = []
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver) and not route.startswith("admin/"):
                found += routes(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                found.append("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route).replace("{pk}", "{id}"))
        return found

    in_schema = {path for _, path in OPERATIONS}

    assert sorted(set(routes(get_resolver().url_patterns)) - in_schema) == sorted(OUTSIDE_THE_API)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "not_authenticated"),
        ("Bearer fbh_000000000000_wrong", "authentication_failed"),
        ("Bearer not-a-key", "authentication_failed"),
        ("Bearer two parts", "authentication_failed"),
        ("revoked", "authentication_failed"),
    ],
    ids=["no key", "wrong key", "malformed key", "malformed header", "revoked key"],
)
def test_a_missing_wrong_or_revoked_key_gets_a_401_and_writes_nothing(
    world: dict[str, Any], method: str, path: str, header: str | None, code: str
) -> None:
    if header == "revoked":
        header = f"Bearer {world['revoked']}"
    client = ApiClient(**({"HTTP_AUTHORIZATION": header} if header else {}))
    before = row_counts()

    response = send(client, method, path, SCOPED[(method, path)][0], target(world))

    assert assert_error(response, 401)["code"] == code
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert row_counts() == before


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_a_key_scoped_to_another_model_is_refused_or_sees_nothing_of_it(
    world: dict[str, Any], method: str, path: str
) -> None:
    request, expected = SCOPED[(method, path)]
    before = row_counts()

    response = send(world["scoped"], method, path, request, target(world))

    assert row_counts() == before
    if expected == FILTERED:
        assert response.status_code == 200
        assert OTHER not in text(response)
        assert OTHER in text(send(world["full"], method, path, request, target(world)))  # the rows exist
    else:
        error = assert_error(response, expected)
        assert error["code"] == {403: "forbidden", 404: "not_found"}[expected]
        assert send(world["full"], method, path, request, target(world)).status_code != expected  # scope, not data
    if expected == 404:  # the same answer as for something that does not exist: existence does not leak
        absent = send(world["scoped"], method, path, request, ABSENT)
        assert without_names(text(response), target(world)) == without_names(text(absent), ABSENT)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_a_staff_session_reads_everything_and_writes_nothing(
    world: dict[str, Any], django_user_model: Any, method: str, path: str
) -> None:
    client = ApiClient()
    client.force_login(django_user_model.objects.create_user("staff", password="unused-password", is_staff=True))
    before = row_counts()

    response = send(client, method, path, SCOPED[(method, path)][0], target(world))

    if method == "GET":
        assert response.status_code in (200, 404), response.content  # 404: no active instructions exist
    else:
        assert "API key" in assert_error(response, 403)["message"]
        assert row_counts() == before


def test_a_session_without_staff_status_reads_nothing(world: dict[str, Any]) -> None:
    client = ApiClient()
    client.force_login(get_user_model().objects.create_user("someone", password="unused-password"))

    for method, path in OPERATIONS:
        assert send(client, method, path, SCOPED[(method, path)][0], target(world)).status_code == 403, (method, path)


def test_the_dashboard_needs_a_staff_login(world: dict[str, Any]) -> None:
    for path in ("/", f"/models/{OTHER}/"):
        response = ApiClient(HTTP_AUTHORIZATION=f"Bearer {world['revoked']}").get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/admin/login/")


def test_the_schema_and_docs_are_open(anonymous: ApiClient) -> None:
    assert anonymous.get("/api/schema/").status_code == 200
    assert anonymous.get("/api/docs/").status_code == 200


def test_metrics_are_open_until_a_token_is_set(anonymous: ApiClient, settings: Any) -> None:
    assert anonymous.get("/metrics").status_code == 200

    settings.FEEDBACKHUB_METRICS_TOKEN = "scrape-token"

    assert anonymous.get("/metrics").status_code == 401
    assert anonymous.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert anonymous.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token").status_code == 200
