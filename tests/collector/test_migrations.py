from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


@pytest.mark.django_db
def test_models_and_migrations_agree() -> None:
    call_command("makemigrations", check=True, dry_run=True, stdout=StringIO())


@pytest.mark.django_db(transaction=True)
def test_the_schema_migrates_down_to_zero_and_back_up() -> None:
    call_command("migrate", "collector", "zero", verbosity=0)
    assert "collector_prediction" not in connection.introspection.table_names()

    call_command("migrate", verbosity=0)

    assert "collector_prediction" in connection.introspection.table_names()
    executor = MigrationExecutor(connection)
    assert executor.migration_plan(executor.loader.graph.leaf_nodes()) == []
