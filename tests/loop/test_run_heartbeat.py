"""A long fit keeps its run's heartbeat fresh from a side thread, so the stale-run check never fails a live run."""

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import pytest

from collector.models import RegisteredModel
from loop import services
from loop.models import LabelledExample, RetrainPolicy, RunStatus
from loop.trainers import SklearnTrainer
from tests.loop.test_retraining import separable

FIT_SECONDS = 2.5


class SlowFitTrainer(SklearnTrainer):
    name: ClassVar[str] = "slow-fit"

    def fit(self, inputs: Sequence[Any], targets: Sequence[Any]) -> None:
        time.sleep(FIT_SECONDS)
        super().fit(inputs, targets)


@pytest.mark.django_db(transaction=True)  # the heartbeat thread has its own connection: it must see the run
def test_the_heartbeat_moves_while_the_trainer_fits(settings) -> None:
    settings.FEEDBACKHUB_RUN_HEARTBEAT_SECONDS = 1
    settings.FEEDBACKHUB_TRAINERS = {**settings.FEEDBACKHUB_TRAINERS, "slow-fit": f"{__name__}.SlowFitTrainer"}
    model = RegisteredModel.objects.create(name="slow", task_type="binary")
    RetrainPolicy.objects.create(registered_model=model, min_new_examples=10, trainer_spec={"trainer": "slow-fit"})
    LabelledExample.objects.bulk_create(
        LabelledExample(registered_model=model, input=row["input"], target=row["target"], actor="t")
        for row in separable(40)
    )
    run, _ = services.retrain_request(registered_model=model, trigger="test", dispatch=False)

    run = services.training_run_execute(run_id=run.pk)

    assert run is not None and run.status == RunStatus.SUCCEEDED, run.error
    beating_for = (run.heartbeat_at - run.started_at).total_seconds()
    assert 1 <= beating_for <= FIT_SECONDS + 1
