"""A trainer a test can hold in the middle of `fit`, so it can kill the worker process that runs it."""

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from django.conf import settings

from loop.trainers import SklearnTrainer

HOLD_FILE = "hold-training"
PID_FILE = "held-trainer.pid"


class HeldTrainer(SklearnTrainer):
    """The scikit-learn trainer, except that `fit` first writes its process id to `<var>/held-trainer.pid` and
    then waits while `<var>/hold-training` exists."""

    name: ClassVar[str] = "held"

    def fit(self, inputs: Sequence[Any], targets: Sequence[Any]) -> None:
        var_dir = Path(settings.VAR_DIR)
        (var_dir / PID_FILE).write_text(str(os.getpid()))
        while (var_dir / HOLD_FILE).exists():
            time.sleep(0.1)
        super().fit(inputs, targets)
