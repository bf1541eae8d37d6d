"""Replay the seed monitor's feedback simulation against a running hub, over HTTP."""

import json
import os
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

# The (prediction, actual) pairs of the seed's two printed runs, four scenarios each.
SEED_RUNS: list[list[tuple[str, list[tuple[int, int]]]]] = [
    [
        ("Good Predictions", [(0, 0), (1, 1), (1, 1), (1, 1), (0, 0)]),
        ("Mixed Performance", [(1, 1), (0, 0), (1, 1), (1, 1), (0, 0)]),
        ("Poor Performance", [(0, 1), (0, 1), (0, 0), (0, 0), (1, 0)]),
        ("Recovery", [(0, 1), (1, 1), (0, 0), (0, 0), (1, 1)]),
    ],
    [
        ("Good Predictions", [(1, 1), (0, 0), (0, 0), (0, 0), (1, 1)]),
        ("Mixed Performance", [(1, 1), (1, 1), (0, 0), (1, 1), (1, 1)]),
        ("Poor Performance", [(0, 0), (1, 1), (1, 1), (0, 1), (1, 0)]),
        ("Recovery", [(0, 0), (1, 1), (1, 1), (0, 0), (0, 0)]),
    ],
]


class Command(BaseCommand):
    help = (
        "Send the seed monitor's simulated feedback (good, mixed, poor and recovery scenarios) to a running hub's "
        "POST /feedback and print the metrics after each send."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The hub (default: %(default)s).")
        parser.add_argument(
            "--key", default=os.environ.get("FEEDBACKHUB_API_KEY", ""), help="API key (default: $FEEDBACKHUB_API_KEY)."
        )
        parser.add_argument("--model", default="", help="Model to count into (default: the hub's default model).")
        parser.add_argument(
            "--model-version", dest="model_version", default="unversioned", help="Version to count into."
        )
        parser.add_argument("--runs", type=int, choices=[1, 2], default=2, help="How many of the seed's runs.")
        parser.add_argument("--delay", type=float, default=1.0, help="Seconds between sends (default: 1).")

    def handle(self, *args: object, **options: Any) -> None:
        if not options["key"]:
            raise CommandError("Pass --key or set FEEDBACKHUB_API_KEY (create one: manage.py create_api_key NAME).")
        runs = SEED_RUNS[: options["runs"]]
        sends = sum(len(pairs) for run in runs for _, pairs in run)
        self.stdout.write("Starting feedback simulation...")
        self.stdout.write(f"This will send {sends} feedback requests with varying accuracy patterns")
        self.stdout.write("You can monitor the metrics in Prometheus (http://localhost:9090)")
        self.stdout.write("Query to watch: model_accuracy")
        failures = 0
        for run in runs:
            for number, (title, pairs) in enumerate(run, start=1):
                self.stdout.write(f"\n=== Scenario {number}: {title} ===")
                for prediction, actual in pairs:
                    failures += not self._send(options, prediction, actual)
                    time.sleep(options["delay"])
        if failures:
            raise CommandError(f"{failures} of {sends} sends failed; see the errors above.")

    def _send(self, options: dict[str, Any], prediction: int, actual: int) -> bool:
        body: dict[str, Any] = {"prediction": prediction, "actual": actual, "version": options["model_version"]}
        if options["model"]:
            body["model"] = options["model"]
        request = urllib.request.Request(  # noqa: S310 - the operator names the hub
            options["url"].rstrip("/") + "/feedback",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {options['key']}"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                answer = json.load(response)
        except urllib.error.HTTPError as error:
            self.stderr.write(f"Error sending feedback: {error.read().decode(errors='replace')}")
            return False
        except OSError as error:
            self.stderr.write(f"Error sending feedback: {error} (is the hub running at {options['url']}?)")
            return False
        metrics = answer["metrics"]
        self.stdout.write(f"[{datetime.now():%H:%M:%S}] Feedback sent - Prediction: {prediction}, Actual: {actual}")
        self.stdout.write(
            f"Current Metrics: Accuracy={metrics['accuracy']:.3f}, Precision={metrics['precision']:.3f}, "
            f"Recall={metrics['recall']:.3f}, F1={metrics['f1']:.3f}"
        )
        return True
