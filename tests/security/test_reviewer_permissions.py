"""What a reviewer (staff, in the Reviewers group, not a superuser) may do in the admin, over every admin model.

A new admin model fails `test_every_admin_model_is_classified` until EXPECTED says what reviewers get there.
"""

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission, User
from django.test import Client, RequestFactory

from collector.models import ApiKey, RegisteredModel
from collector.services import api_key_create
from reviews.models import Instruction, KnowledgeEntry

pytestmark = pytest.mark.django_db
ACTIONS = ("view", "add", "change", "delete")
READ = frozenset({"view"})
NOTHING = frozenset()

# What the review workflow needs, as the Reviewers migrations grant it (reviews 0002 and 0003), after what each
# ModelAdmin allows anyone (collected data is never added or changed in the admin).
EXPECTED: dict[str, frozenset[str]] = {
    "reviews.reviewtask": frozenset({"view", "change"}),
    "reviews.correction": frozenset({"view", "add", "change"}),
    "reviews.knowledgeentry": READ,  # changed by approving a knowledge correction
    "reviews.instruction": READ,  # changed by approving a behaviour correction
    "collector.prediction": READ,
    "collector.feedback": READ,
    "collector.registeredmodel": READ,
    "collector.modelversion": READ,
    "collector.driftcheck": READ,
    "collector.driftreference": READ,
    "collector.driftpolicy": READ,
    "reviews.reviewpolicy": NOTHING,
    "collector.pendingoutcome": NOTHING,
    "collector.apikey": NOTHING,
    "auth.user": NOTHING,
    "auth.group": NOTHING,
    "django_celery_beat.periodictask": NOTHING,
    "django_celery_beat.clockedschedule": NOTHING,
    "django_celery_beat.crontabschedule": NOTHING,
    "django_celery_beat.solarschedule": NOTHING,
    "django_celery_beat.intervalschedule": NOTHING,
    "loop.retrainpolicy": NOTHING,
    "loop.trainingrun": NOTHING,
    "loop.promotion": NOTHING,
    "loop.modelartifact": NOTHING,
}
GROUP_PERMISSIONS = {
    "collector.view_prediction",
    "collector.view_feedback",
    "collector.view_registeredmodel",
    "collector.view_modelversion",
    "collector.view_driftcheck",
    "collector.view_driftreport",
    "collector.view_driftreference",
    "collector.view_driftpolicy",
    "reviews.view_reviewtask",
    "reviews.change_reviewtask",
    "reviews.view_reviewevent",
    "reviews.view_correction",
    "reviews.add_correction",
    "reviews.change_correction",
    "reviews.view_knowledgeentry",
    "reviews.view_instruction",
}
REGISTERED = sorted(model._meta.label_lower for model in admin.site._registry)


@pytest.fixture
def reviewer_user() -> User:
    user = User.objects.create_user("rita", password="unused-password", is_staff=True)
    user.groups.add(Group.objects.get(name="Reviewers"))
    return user


@pytest.fixture
def reviewer(reviewer_user: User) -> Client:
    client = Client()
    client.force_login(reviewer_user)
    return client


def model_admin(label: str) -> Any:
    return next(model_admin for model, model_admin in admin.site._registry.items() if model._meta.label_lower == label)


def allowed(user: User, label: str) -> frozenset[str]:
    request = RequestFactory().get("/admin/")
    request.user = user
    checks = model_admin(label)
    return frozenset(action for action in ACTIONS if getattr(checks, f"has_{action}_permission")(request))


def test_every_admin_model_is_classified() -> None:
    assert sorted(EXPECTED) == REGISTERED


def test_the_reviewers_group_holds_exactly_the_workflows_permissions() -> None:
    permissions = Permission.objects.filter(group__name="Reviewers").select_related("content_type")

    assert {f"{p.content_type.app_label}.{p.codename}" for p in permissions} == GROUP_PERMISSIONS


@pytest.mark.parametrize("label", REGISTERED)
def test_a_reviewer_may_do_exactly_what_the_workflow_needs(reviewer_user: User, label: str) -> None:
    assert allowed(reviewer_user, label) == EXPECTED[label]


@pytest.mark.parametrize("label", REGISTERED)
def test_the_admin_pages_follow_the_permissions(reviewer: Client, label: str) -> None:
    app_label, model_name = label.split(".")
    changelist = reviewer.get(f"/admin/{app_label}/{model_name}/")
    add_page = reviewer.get(f"/admin/{app_label}/{model_name}/add/")

    assert changelist.status_code == (200 if "view" in EXPECTED[label] else 403)
    assert add_page.status_code == (200 if "add" in EXPECTED[label] else 403)


def test_the_admin_index_lists_only_what_a_reviewer_may_see(reviewer: Client) -> None:
    index = reviewer.get("/admin/")

    listed = {
        f"{app['app_label']}.{model['object_name'].lower()}"
        for app in index.context["app_list"]
        for model in app["models"]
    }
    assert listed == {label for label, actions in EXPECTED.items() if actions}


def test_a_reviewer_cannot_see_create_or_revoke_api_keys(reviewer: Client) -> None:
    key, _ = api_key_create(name="production")

    assert reviewer.get(f"/admin/collector/apikey/{key.pk}/change/").status_code == 403
    assert reviewer.post("/admin/collector/apikey/add/", {"name": "mine", "all_models": "on"}).status_code == 403
    response = reviewer.post("/admin/collector/apikey/", {"action": "revoke", "_selected_action": [key.pk]})
    assert response.status_code == 403
    assert list(ApiKey.objects.values_list("name", flat=True)) == ["production"]
    key.refresh_from_db()
    assert key.revoked_at is None


def test_a_reviewer_cannot_give_themselves_more_rights(reviewer: Client, reviewer_user: User) -> None:
    group = Group.objects.get(name="Reviewers")

    assert reviewer.post(f"/admin/auth/user/{reviewer_user.pk}/change/", {"is_superuser": "on"}).status_code == 403
    assert reviewer.get(f"/admin/auth/group/{group.pk}/change/").status_code == 403
    reviewer_user.refresh_from_db()
    assert not reviewer_user.is_superuser


def test_revoking_keys_needs_the_change_permission_not_only_view() -> None:
    key, _ = api_key_create(name="production")
    auditor = User.objects.create_user("audit", password="unused-password", is_staff=True)
    auditor.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    client = Client()
    client.force_login(auditor)

    page = client.get("/admin/collector/apikey/")
    client.post("/admin/collector/apikey/", {"action": "revoke", "_selected_action": [key.pk]})

    assert page.status_code == 200
    assert "Revoke the selected API keys" not in page.content.decode()
    key.refresh_from_db()
    assert key.revoked_at is None


def test_a_reviewer_cannot_restore_knowledge_or_instructions(reviewer: Client) -> None:
    model = RegisteredModel.objects.create(name="assistant", task_type="generative")
    entry = KnowledgeEntry.objects.create(registered_model=model, topic="refunds", version=1, content="5 days")
    instruction = Instruction.objects.create(registered_model=model, version=1, content="Be brief.", is_active=False)

    reviewer.post("/admin/reviews/knowledgeentry/", {"action": "restore", "_selected_action": [entry.pk]})
    reviewer.post("/admin/reviews/instruction/", {"action": "restore", "_selected_action": [instruction.pk]})

    assert KnowledgeEntry.objects.count() == 1
    assert Instruction.objects.count() == 1
    assert not Instruction.objects.filter(is_active=True).exists()
