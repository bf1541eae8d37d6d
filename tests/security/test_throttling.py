import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import redis
from django.core.cache import cache

from collector.models import ApiKey, Feedback, Prediction
from collector.services import api_key_create
from feedbackhub.env import parse_rate
from loop.api.throttling import write_hit
from tests.conftest import ApiClient, prediction_body

pytestmark = pytest.mark.django_db
BASE_DIR = Path(__file__).resolve().parents[2]
URL = "/api/v1/predictions/"
REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture(autouse=True)
def _three_writes_a_day(settings: Any) -> None:
    # A day's window: the count cannot roll over in the middle of a test (unless it runs across midnight UTC).
    settings.FEEDBACKHUB_WRITE_RATE = "3/day"


def spend_writes(client: ApiClient, count: int) -> None:
    for number in range(count):
        assert client.post_json(URL, prediction_body(event_id=f"spent-{number}")).status_code == 201


def assert_throttled(response: Any) -> None:
    assert response.status_code == 429
    assert 1 <= int(response.headers["Retry-After"]) <= 86400
    error = response.json()["error"]
    assert (error["status"], error["code"], error["fields"]) == (429, "throttled", [])
    assert "3/day" in error["message"]
    assert f"Expected available in {response.headers['Retry-After']} seconds" in error["message"]


def test_writes_past_the_rate_get_a_429_with_retry_after_and_write_nothing(api: ApiClient) -> None:
    spend_writes(api, 3)

    response = api.post_json(URL, prediction_body(event_id="one-too-many"))

    assert_throttled(response)
    assert Prediction.objects.count() == 3
    assert not Prediction.objects.filter(event_id="one-too-many").exists()


def test_every_write_endpoint_counts_toward_the_same_limit(api: ApiClient) -> None:
    spend_writes(api, 3)

    assert_throttled(api.post_json("/api/v1/feedback/", {"interaction_id": "chat-1", "kind": "thumbs_up"}))
    assert_throttled(api.post_json("/log-feedback", {"model_version": "v1", "input_data": "x", "prediction": "y"}))
    assert Feedback.objects.count() == 0
    assert Prediction.objects.count() == 3


def test_every_write_operation_documents_the_429_it_can_answer(api: ApiClient, anonymous: ApiClient) -> None:
    schema = anonymous.get("/api/schema/?format=json").json()
    operations = [
        (method, path, operation) for path, methods in schema["paths"].items() for method, operation in methods.items()
    ]

    writes = [(method, path, operation) for method, path, operation in operations if method != "get"]
    assert {("post", "/api/v1/predictions/"), ("post", "/log-feedback")} <= {(m, p) for m, p, _ in writes}
    for method, path, operation in writes:
        documented = operation["responses"].get("429")
        assert documented is not None, (method, path)
        assert documented["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
        assert documented["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    assert not [path for method, path, operation in operations if method == "get" and "429" in operation["responses"]]
    spend_writes(api, 3)
    jsonschema.validate(api.post_json(URL, prediction_body()).json(), schema["components"]["schemas"]["Error"])


def test_other_keys_are_not_affected(api: ApiClient) -> None:
    spend_writes(api, 3)
    assert_throttled(api.post_json(URL, prediction_body()))

    other = ApiClient(api_key_create(name="other-service")[1])

    assert other.post_json(URL, prediction_body(event_id="from-the-other-key")).status_code == 201


def test_reads_are_not_throttled(api: ApiClient) -> None:
    spend_writes(api, 3)

    for _ in range(5):
        assert api.get(URL).status_code == 200
    assert api.get("/api/v1/models/").status_code == 200


def test_the_limit_can_be_turned_off(api: ApiClient, settings: Any) -> None:
    settings.FEEDBACKHUB_WRITE_RATE = "off"

    spend_writes(api, 5)


def count_writes_in_another_process(api_key: ApiKey, count: int, **env: str) -> None:
    """Writes counted by a separate Python process, as another gunicorn worker would."""
    script = (
        "import django, json, sys, time; django.setup();"
        "from loop.api.throttling import write_hit; from feedbackhub.env import parse_rate;"
        "rate = parse_rate('rate', '3/day');"
        "hits = [write_hit(key_prefix=sys.argv[1], rate=rate, now=time.time()) for _ in range(int(sys.argv[2]))];"
        "print(json.dumps(hits))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, api_key.prefix, str(count)],
        cwd=BASE_DIR,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "feedbackhub.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(result.stdout) == [0] * count


def test_web_processes_on_one_machine_share_the_counts(api: ApiClient, api_key: tuple[ApiKey, str]) -> None:
    count_writes_in_another_process(api_key[0], 3)

    assert_throttled(api.post_json(URL, prediction_body()))
    assert Prediction.objects.count() == 0


@pytest.fixture
def redis_cache(settings: Any) -> Iterator[None]:
    """The cache on a real Redis (database 14, emptied first); skipped when none runs, except in CI."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"Redis is not reachable at {REDIS_URL} (CI=true makes this test mandatory)")
    redis_backend = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    settings.CACHES = {"default": {**settings.CACHES["default"], **redis_backend}}
    yield
    client.close()


@pytest.mark.usefixtures("redis_cache")
def test_on_redis_processes_share_the_counts_and_other_keys_are_not_affected(
    api: ApiClient, api_key: tuple[ApiKey, str]
) -> None:
    count_writes_in_another_process(api_key[0], 2, CACHE_URL=REDIS_URL)
    assert api.post_json(URL, prediction_body(event_id="third")).status_code == 201

    assert_throttled(api.post_json(URL, prediction_body(event_id="fourth")))
    assert list(Prediction.objects.values_list("event_id", flat=True)) == ["third"]
    assert cache.get(f"throttle:write:{api_key[0].prefix}:{int(time.time() // 86400)}") == 4
    other = ApiClient(api_key_create(name="other-service")[1])
    assert other.post_json(URL, prediction_body(event_id="other")).status_code == 201


def test_a_process_reports_its_writes_to_the_shared_cache_in_steps_of_one_percent_of_the_limit() -> None:
    rate = parse_rate("rate", "500/day")
    now = time.time()
    prefix = f"stepping-{now}"  # the file cache outlives a test run
    counter = f"throttle:write:{prefix}:{int(now // 86400)}"

    assert [write_hit(key_prefix=prefix, rate=rate, now=now) for _ in range(4)] == [0] * 4
    assert cache.get(counter) is None  # not told yet: a step is 5 writes
    assert [write_hit(key_prefix=prefix, rate=rate, now=now) for _ in range(496)] == [0] * 496
    assert cache.get(counter) == 500

    assert write_hit(key_prefix=prefix, rate=rate, now=now) > 0
    assert cache.get(counter) == 501  # past the limit every write is checked against the shared count
