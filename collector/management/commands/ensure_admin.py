import os
import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction


def existing_superuser() -> AbstractBaseUser | None:
    return get_user_model().objects.filter(is_superuser=True).order_by("pk").first()


class Command(BaseCommand):
    help = (
        "Create a superuser if there is none (safe to run on every start). The generated password is printed "
        "once; set DJANGO_SUPERUSER_PASSWORD to choose it instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--username",
            default=os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin"),
            help="Username for a new superuser (default: $DJANGO_SUPERUSER_USERNAME or 'admin').",
        )

    def handle(self, *args: object, **options: object) -> None:
        with transaction.atomic():
            superuser = existing_superuser()
            if superuser is None:
                self.create_superuser(str(options["username"]))
                return
        username = superuser.get_username()
        self.stdout.write(
            f"Admin account exists ({username}); reset it with: python manage.py changepassword {username}"
        )

    def create_superuser(self, username: str) -> None:
        user_model = get_user_model()
        if user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).exists():
            raise CommandError(
                f"A user named {username!r} exists but is not a superuser: choose another name with --username "
                "(or DJANGO_SUPERUSER_USERNAME). Nothing was created."
            )
        chosen_password = os.environ.get("DJANGO_SUPERUSER_PASSWORD", "")
        password = chosen_password or secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username, email="", password=password)
        if chosen_password:
            self.stdout.write(f"Admin account created: {username} (password from DJANGO_SUPERUSER_PASSWORD)")
        else:
            self.stdout.write(f"Admin account created: {username} / {password}  (shown once: change it in the admin)")
