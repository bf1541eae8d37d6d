"""Data a dashboard can show: traffic over three days with latencies, outcomes and feedback, a retrain, a review
task, and a drift check in which the first input of the champion's last day has shifted."""

import random
from datetime import timedelta

from django.db.models import F
from django.utils import timezone

from collector.drift import drift_check_all, drift_windows_update
from collector.models import Prediction, RegisteredModel
from loop import services
from loop.models import LabelledExample, RetrainPolicy, TrainingRun
from reviews.models import Priority, ReviewTask
from tests.conftest import ApiClient


def seed_dashboard_data(api: ApiClient, *, hours: int = 72, per_hour: int = 6) -> RegisteredModel:
    model = RegisteredModel.objects.create(name="churn", task_type="binary")
    RetrainPolicy.objects.create(registered_model=model, min_new_examples=10_000, holdout_share=0.25)
    rng = random.Random(11)
    LabelledExample.objects.bulk_create(
        LabelledExample(registered_model=model, input=[x, y], target=int(x + y > 1), actor="seed")
        for x, y in ((rng.random(), rng.random()) for _ in range(800))
    )
    run, _ = services.retrain_request(registered_model=model, trigger="api", dispatch=False)
    run = services.training_run_execute(run_id=run.pk)
    assert run is not None and run.promoted, run.error if run else "not claimed"
    champion = run.candidate_version.version

    now = timezone.now()
    bodies = []
    for hour in range(hours):
        moment = now - timedelta(hours=hours - hour)
        for n in range(per_hour):
            x, y = rng.random(), rng.random()
            if hour >= hours - 24:
                x += 0.6  # the last day's inputs have moved
            predicted = int(x + y > 1)
            version = champion if hour > hours // 2 else "v0"
            bodies.append({
                "model": "churn", "version": version, "event_id": f"h{hour}-{n}", "input": [x, y],
                "prediction": predicted, "confidence": 0.5 + rng.random() / 2,
                "latency_ms": rng.lognormvariate(3, 0.6), "timestamp": moment.isoformat(),
                "actual": predicted if rng.random() < 0.85 else 1 - predicted,
            })  # fmt: skip
    for start in range(0, len(bodies), 500):
        assert api.post_json("/api/v1/predictions/", bodies[start : start + 500]).status_code == 201
    feedback = [
        {
            "model": "churn", "prediction_event_id": body["event_id"],
            "kind": rng.choice(["thumbs_up", "thumbs_up", "thumbs_down", "rating"]), "value": rng.randint(1, 5),
            "timestamp": body["timestamp"],
        }
        for body in bodies[::3]
    ]  # fmt: skip
    for item in feedback:
        if item["kind"] != "rating":
            del item["value"]
    assert api.post_json("/api/v1/feedback/", feedback).status_code == 201
    # Counted as the beat would, once the rows are older than the counting lag.
    Prediction.objects.filter(registered_model=model).update(received_at=F("created_at"))
    drift_windows_update()
    drift_check_all(force=True)
    ReviewTask.objects.create(
        registered_model=model,
        pattern_key="interaction:billing",
        priority=Priority.HIGH,
        priority_rank=0,
        suggested_action="review and update prompt/instructions",
        negative_rate=0.6,
    )
    assert TrainingRun.objects.filter(registered_model=model).count() == 1
    return model
