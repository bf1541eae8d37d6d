from django.db import migrations

REVIEWERS = "Reviewers"
# A drift review task sends reviewers to the drift checks: they read them, and change nothing there.
CODENAMES = ["view_driftcheck", "view_driftreport", "view_driftreference", "view_driftpolicy"]


def grant(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    group, _ = apps.get_model("auth", "Group").objects.get_or_create(name=REVIEWERS)
    permissions = apps.get_model("auth", "Permission").objects.filter(
        content_type__app_label="collector", codename__in=CODENAMES
    )
    assert permissions.count() == len(CODENAMES), "missing drift permissions"
    group.permissions.add(*permissions)


def revoke(apps, schema_editor):
    group = apps.get_model("auth", "Group").objects.filter(name=REVIEWERS).first()
    if group is not None:
        group.permissions.remove(*group.permissions.filter(codename__in=CODENAMES))


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0002_reviewers_group"),
        ("collector", "0009_drift_watermark_and_confidence_backfill"),
    ]

    operations = [migrations.RunPython(grant, revoke)]
