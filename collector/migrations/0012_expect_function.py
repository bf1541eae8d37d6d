from django.db import migrations

# Raises `sqlstate` with `message` unless `ok` holds: a pipelined write (collector.services._new_predictions_pipelined)
# sends its checks, its insert and its COMMIT in one round trip, and a check that fails aborts the transaction, so
# nothing after it runs and the COMMIT only ends it.
CREATE = """
CREATE OR REPLACE FUNCTION feedbackhub_expect(ok boolean, sqlstate text, message text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF ok IS NOT TRUE THEN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message;
    END IF;
END
$$
"""
DROP = "DROP FUNCTION IF EXISTS feedbackhub_expect(boolean, text, text)"


def create(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("collector", "0011_outcome_window_index"),
    ]

    operations = [migrations.RunPython(create, drop)]
