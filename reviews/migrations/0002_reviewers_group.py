from django.db import migrations

REVIEWERS = "Reviewers"
# Only what reviewing needs: read the collected data, work tasks, propose and decide corrections, read what
# corrections produce. Nothing on users, groups or API keys.
PERMISSIONS = {
    "collector": ["view_prediction", "view_feedback", "view_registeredmodel", "view_modelversion"],
    "reviews": [
        "view_reviewtask", "change_reviewtask", "view_reviewevent",
        "view_correction", "add_correction", "change_correction",
        "view_knowledgeentry", "view_instruction",
    ],
}  # fmt: skip


def create_reviewers_group(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    # Permissions are normally created after all migrations ran; this group needs them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, verbosity=0)
        app_config.models_module = None
    group_model = apps.get_model("auth", "Group")
    permission_model = apps.get_model("auth", "Permission")
    group, _ = group_model.objects.get_or_create(name=REVIEWERS)
    for app_label, codenames in PERMISSIONS.items():
        permissions = permission_model.objects.filter(content_type__app_label=app_label, codename__in=codenames)
        assert permissions.count() == len(codenames), f"missing permissions in {app_label}"
        group.permissions.add(*permissions)


def remove_reviewers_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name=REVIEWERS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("reviews", "0001_initial"),
        ("collector", "0004_training_label"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_reviewers_group, remove_reviewers_group)]
