from django.core.management.base import BaseCommand, CommandError, CommandParser

from collector.drift import drift_policy_for, drift_reference_from_predictions, drift_window_recount
from collector.models import ModelVersion


class Command(BaseCommand):
    help = (
        "Build (or rebuild) the drift reference of a model version trained outside the hub from its first N "
        "predictions, then recount its current windows in the new reference's bins."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", help="The registered model's name.")
        parser.add_argument(
            "--model-version", dest="model_version", help="The version (default: the one registered last)."
        )
        parser.add_argument("--size", type=int, help="How many first predictions (default: the drift policy's).")

    def handle(self, *args: object, **options: object) -> None:
        versions = ModelVersion.objects.filter(registered_model__name=options["model"]).select_related(
            "registered_model"
        )
        if options["model_version"]:
            versions = versions.filter(version=options["model_version"])
        version = versions.order_by("-created_at", "-pk").first()
        if version is None:
            raise CommandError(f"No such model or version: {options['model']} {options['model_version'] or ''}".strip())
        size = options["size"] or drift_policy_for(version.registered_model).reference_size
        if size < 1:
            raise CommandError("--size is at least 1.")
        reference = drift_reference_from_predictions(model_version=version, size=size)
        if reference is None:
            raise CommandError(f"{version} has fewer than {size} predictions; try a smaller --size.")
        counted = drift_window_recount(model_version=version)
        self.stdout.write(
            f"Drift reference of {version}: {reference.sample_size} predictions, {len(reference.inputs)} input "
            f"features, {len(reference.outputs)} outputs; {counted} later predictions counted into its windows."
        )
