"""Every console user can change their own password: the old one is required, the
validators apply, the session stays, and the change is audited."""

import pytest

from governance.models import AuditEvent

pytestmark = pytest.mark.django_db
PASSWORD = "pw-for-tests-only"  # tests.factories.UserFactory
NEW = "a-long-new-passphrase-2026"


@pytest.mark.parametrize("role", ["admin", "owner", "approver", "reviewer", "auditor"])
def test_each_role_reaches_the_page_from_its_name(client, cast, role):
    client.force_login(cast[role])
    assert 'href="/password/"' in client.get("/").content.decode()
    assert client.get("/password/").status_code == 200


def test_a_user_without_a_role_may_not(client, cast):
    client.force_login(cast["outsider"])
    assert client.get("/password/").status_code == 403


def test_the_password_changes_the_session_stays_and_it_is_audited(client, reviewer):
    client.force_login(reviewer)

    response = client.post(
        "/password/",
        {"old_password": PASSWORD, "new_password1": NEW, "new_password2": NEW},
        follow=True,
    )

    assert response.redirect_chain[-1][0] == "/"
    assert "Your password is changed." in response.content.decode()
    reviewer.refresh_from_db()
    assert reviewer.check_password(NEW)
    assert "_auth_user_id" in client.session  # still signed in
    (event,) = AuditEvent.objects.filter(action="user.password_change")
    assert event.actor_id == reviewer.pk and event.object_id == str(reviewer.pk)


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("wrong", NEW, "old_password"),
        (PASSWORD, "short", "new_password2"),
        (PASSWORD, "password123", "new_password2"),
    ],
)
def test_a_wrong_old_password_or_a_weak_new_one_is_refused_in_place(
    client, reviewer, old, new, field
):
    client.force_login(reviewer)

    response = client.post(
        "/password/", {"old_password": old, "new_password1": new, "new_password2": new}
    )

    assert response.status_code == 200
    assert response.context["form"].errors[field]
    reviewer.refresh_from_db()
    assert reviewer.check_password(PASSWORD)
    assert not AuditEvent.objects.filter(action="user.password_change").exists()


def test_the_help_is_one_rule_a_line_and_each_described_by_id_exists(client, reviewer):
    import re

    client.force_login(reviewer)
    html = client.get("/password/").content.decode()

    described_by = re.findall(r'aria-describedby="([^"]+)"', html)
    assert described_by  # the new password fields are described by their help
    for ids in described_by:
        for id_ in ids.split():
            assert f'id="{id_}"' in html, id_
    assert "personal information.Your password" not in html
    assert "<li>Your password must contain at least 8 characters.</li>" in html
