from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from collector.models import TaskType
from collector.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key. The key is printed once, as the last line; only its hash is stored."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="Who uses the key, e.g. 'fraud-scorer-prod'.")
        parser.add_argument(
            "--model",
            action="append",
            default=[],
            dest="models",
            metavar="NAME",
            help="Limit the key to this registered model (repeat for several). Without it: every model.",
        )
        parser.add_argument(
            "--task-type",
            choices=TaskType.values,
            default=TaskType.BINARY,
            help="Task type for models named with --model that are not registered yet (default: binary).",
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            api_key, raw_key = api_key_create(
                name=str(options["name"]),
                model_names=list(options["models"]),
                task_type_for_new=str(options["task_type"]),
            )
        except ValidationError as error:
            raise CommandError(f"{error.messages[0]} Nothing was created.") from None
        scope = ", ".join(options["models"]) if options["models"] else "every model"
        self.stderr.write(f"Created API key '{api_key.name}' ({api_key.prefix}) for {scope}.")
        self.stderr.write("Copy it now: it is stored hashed and cannot be shown again.")
        self.stdout.write(raw_key)
