from django.core.management.base import BaseCommand, CommandError, CommandParser

from collector.models import RegisteredModel
from collector.retention import retention_purge


class Command(BaseCommand):
    help = (
        "Delete predictions, feedback and pending outcomes older than each model's retention_days (set in the "
        "admin), in small chunks. Rows that open review tasks or training sets still need are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="Only this registered model.")
        parser.add_argument("--dry-run", action="store_true", help="Count what would be deleted; delete nothing.")
        parser.add_argument("--chunk-size", type=int, default=1000)

    def handle(self, *args: object, **options: object) -> None:
        models = RegisteredModel.objects.filter(retention_days__isnull=False)
        if options["model"]:
            models = RegisteredModel.objects.filter(name=options["model"])
            if not models.exists():
                raise CommandError(f"No model named '{options['model']}'.")
        for model in models:
            if model.retention_days is None:
                self.stdout.write(f"{model.name}: no retention_days set, nothing to purge (set it in the admin).")
                continue
            result = retention_purge(
                registered_model=model,
                dry_run=bool(options["dry_run"]),
                chunk_size=int(options["chunk_size"]),
                on_progress=lambda label, done, name=model.name: self.stderr.write(f"  {name}: deleted {done} {label}"),
            )
            verb = "would delete" if options["dry_run"] else "deleted"
            self.stdout.write(
                f"{model.name}: {verb} {result.predictions} predictions, {result.feedback} feedback and "
                f"{result.pending_outcomes} pending outcomes older than {result.cutoff:%Y-%m-%d %H:%M} UTC."
            )
