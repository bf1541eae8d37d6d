from django.core.management.base import BaseCommand, CommandError, CommandParser

from collector.counters import counters_rebuild
from collector.models import ModelVersion
from collector.services import feedback_input_keys_fill


class Command(BaseCommand):
    help = (
        "Recompute the quality counters (/metrics, the metrics API) from the stored predictions. Needed only after "
        "rows were changed around the API, e.g. by hand in the database. Also keys feedback by its prediction's "
        "input where that key is missing (feedback linked by an older release while it was being upgraded)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--model", help="Only this registered model's versions.")

    def handle(self, *args: object, **options: object) -> None:
        version_ids = None
        if options["model"]:
            version_ids = list(
                ModelVersion.objects.filter(registered_model__name=options["model"]).values_list("pk", flat=True)
            )
            if not version_ids:
                raise CommandError(f"No model named '{options['model']}' with versions; see /admin/collector/.")
        rebuilt = counters_rebuild(model_version_ids=version_ids)
        self.stdout.write(f"Rebuilt the counters of {rebuilt} model version(s).")
        keyed = feedback_input_keys_fill()
        if keyed:
            self.stdout.write(f"Keyed {keyed} feedback item(s) by their prediction's input (for insights).")
