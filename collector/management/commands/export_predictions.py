from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime
from django.utils.timezone import is_naive, make_aware

from collector.exports import FORMATS, export_lines, export_rows
from collector.models import Prediction, RegisteredModel

PROGRESS_EVERY = 10_000


def moment(text: str) -> datetime:
    parsed = parse_datetime(text)
    if parsed is None:
        raise CommandError(f"'{text}' is not a date and time; use ISO 8601, e.g. 2026-11-01T00:00:00Z.")
    return make_aware(parsed) if is_naive(parsed) else parsed


class Command(BaseCommand):
    help = "Write a model's predictions as CSV or JSON Lines, streaming in chunks (memory stays bounded)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", required=True, help="Registered model name.")
        parser.add_argument("--since", type=moment, help="Only predictions at or after this time (ISO 8601).")
        parser.add_argument("--until", type=moment, help="Only predictions before this time (ISO 8601).")
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("--output", "-o", type=Path, help="File to write (default: standard output).")

    def handle(self, *args: object, **options: Any) -> None:
        model = RegisteredModel.objects.filter(name=options["model"]).first()
        if model is None:
            raise CommandError(f"No model named '{options['model']}'; see /admin/collector/registeredmodel/.")
        predictions = Prediction.objects.filter(registered_model=model)
        if options["since"]:
            predictions = predictions.filter(created_at__gte=options["since"])
        if options["until"]:
            predictions = predictions.filter(created_at__lt=options["until"])
        total = predictions.count()
        rows = self._with_progress(export_rows(predictions), total)
        if options["output"]:
            with options["output"].open("w", encoding="utf-8", newline="") as target:
                self._write(target, export_lines(options["format"], rows))
        else:
            self._write(self.stdout, export_lines(options["format"], rows))
        where = f" to {options['output']}" if options["output"] else ""
        self.stderr.write(f"Exported {total:,} predictions of '{model.name}'{where}.")

    def _with_progress(self, rows: Iterator[dict], total: int) -> Iterator[dict]:
        for done, row in enumerate(rows, start=1):
            yield row
            if done % PROGRESS_EVERY == 0:
                self.stderr.write(f"exported {done:,} / {total:,} predictions ({done * 100 // total}%)")

    def _write(self, target: TextIO, lines: Iterator[str]) -> None:
        for line in lines:
            target.write(line)
