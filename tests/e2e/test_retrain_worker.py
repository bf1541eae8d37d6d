"""The improvement loop on the real stack: gunicorn, a Celery worker on the embedded broker, SQLite.

Labelled examples past the threshold queue a run when they are committed; the worker trains, evaluates and
promotes; the predict endpoint and /metrics then use the new champion.
"""

import json
import random
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.test_stack import StartStack, http_get, manage, scraped_value

pytestmark = [pytest.mark.slow]


def post(url: str, key: str, body: object) -> tuple[int, object]:
    request = urllib.request.Request(  # noqa: S310 - loopback
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def test_examples_past_the_threshold_are_trained_promoted_and_served(start_stack: StartStack, var_dir: Path) -> None:
    key = manage(var_dir, "create_api_key", "loop-e2e").strip().splitlines()[-1]
    manage(
        var_dir, "shell", "-c",
        "from collector.models import RegisteredModel; from loop.models import RetrainPolicy;"
        "m = RegisteredModel.objects.create(name='seed', task_type='binary');"
        "RetrainPolicy.objects.create(registered_model=m, min_new_examples=50, holdout_share=0.2)",
    )  # fmt: skip
    stack = start_stack()
    stack.wait_for_log(r"Press Ctrl-C to stop\.")
    stack.wait_for_log(r"celery@\S+ ready\.")
    rng = random.Random(5)
    rows = [[rng.random(), rng.random()] for _ in range(60)]
    examples = [{"input": row, "target": int(row[0] + row[1] > 1)} for row in rows]
    base = f"{stack.base_url}/api/v1/models/seed"

    assert post(f"{base}/examples/", key, examples[:20])[0] == 201  # under the threshold: nothing happens
    assert post(f"{base}/examples/", key, examples[20:])[0] == 201  # 60 >= 50: a run is queued on commit

    champion = None
    deadline = time.monotonic() + 90
    while champion is None and time.monotonic() < deadline:
        time.sleep(1)
        versions = json.loads(http_get_with_key(f"{base}/versions/", key))
        champion = next((v["version"] for v in versions if v["champion"]), None)
    assert champion, stack.log()

    status, answer = post(f"{base}/predict/", key, {"input": [0.95, 0.9]})
    assert (status, answer["prediction"], answer["version"]) == (200, "1", champion)
    metrics = http_get(f"{stack.base_url}/metrics")[2]
    assert scraped_value(metrics, "model_predictions_total", model="seed", version=champion) == 1
    assert stack.stop(signal.SIGINT) == 0


def http_get_with_key(url: str, key: str) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return response.read().decode()
