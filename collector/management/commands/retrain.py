from django.core.management.base import BaseCommand, CommandError, CommandParser

from collector.models import RegisteredModel
from loop import services


class Command(BaseCommand):
    help = "Train, evaluate and (if better) promote a new version of a model now, in this process."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", help="Registered model name.")

    def handle(self, *args: object, **options: object) -> None:
        model = RegisteredModel.objects.filter(name=options["model"]).first()
        if model is None:
            raise CommandError(f"No model named '{options['model']}'.")
        run, created = services.retrain_request(registered_model=model, trigger="command", dispatch=False)
        if not created:
            raise CommandError(
                f"Run {run.pk} is already {run.status}; wait for it (GET /api/v1/training-runs/{run.pk}/)."
            )
        waiting = services.labelled_since(registered_model=model, since=None)
        self.stderr.write(f"Run {run.pk}: training '{model.name}' on up to {waiting:,} labelled examples ...")
        finished = services.training_run_execute(run_id=run.pk)
        if finished is None:
            raise CommandError(f"Run {run.pk} was taken by a worker meanwhile; see /api/v1/training-runs/{run.pk}/.")
        if finished.status == "failed":
            raise CommandError(f"Run {run.pk} failed: {finished.error}")
        self.stderr.write(
            f"Trained on {finished.train_count:,}, evaluated on {finished.holdout_count:,} held-out examples "
            f"in {finished.duration_seconds:.1f} s."
        )
        self.stdout.write(f"Run {run.pk}: {finished.decision}")
