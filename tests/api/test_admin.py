"""Staff work through the HTTP API: search, a person's record read and corrected, the
admin export, acting as the person (RFC 8693 `act`), the trail and who may read it; and
what each refusal records."""

import pytest

from tests.api.problems import assert_problem
from tests.api.test_accounts import BROWSER, PASSWORD, as_user, login, sign_up
from tests.api.test_second_factor import claims
from tests.api.test_staff import staff_member

WHY = "ticket 4711: the person asked"


def trail(conn, **where) -> list[dict]:
    """The trail's rows, oldest first, those matching `where` (column = value)."""
    clauses = " and ".join(f"{column} = %({column})s" for column in where) or "true"
    return conn.execute(
        f"select * from audit_events where {clauses} order by id",  # noqa: S608 - test's own
        where,
    ).fetchall()


def events(conn, **where) -> list[str]:
    return [row["event"] for row in trail(conn, **where)]


@pytest.fixture
def anna(site, conn):
    return sign_up(site, conn, first_name="Anna", last_name="de Vries")


def test_support_finds_people_by_address_name_and_company_a_page_at_a_time(app, site, conn, anna):
    support, _, _ = staff_member(app, site, conn)
    for n in range(3):
        sign_up(site, conn, email=f"anneke{n}@example.com", first_name="Anneke")
    owner = as_user(app, login(site).get_json()["access_token"])
    owner.post("/v1/companies", json={"name": "Zeeland Tulips"})

    first = support.get("/v1/admin/users", query_string={"q": "ann", "reason": WHY, "limit": 2})
    assert first.status_code == 200, first.get_data(as_text=True)
    emails = [r["email"] for r in first.get_json()]
    assert emails == ["anna@example.com", "anneke0@example.com"]
    following = first.headers["Link"].split(";")[0].strip("<>")
    second = support.get(following)
    assert [r["email"] for r in second.get_json()] == ["anneke1@example.com", "anneke2@example.com"]
    # By last name, by a company's name, in any case; each person shown is in the trail.
    by_name = support.get("/v1/admin/users", query_string={"q": "DE VR", "reason": WHY})
    assert [r["id"] for r in by_name.get_json()] == [anna["id"]]
    by_company = support.get("/v1/admin/users", query_string={"q": "zeeland", "reason": WHY})
    assert by_company.get_json()[0]["companies"] == ["Zeeland Tulips"]
    found = trail(conn, event="staff.found", subject_id=anna["id"])
    assert len(found) == 3 and {row["reason"] for row in found} == {WHY}
    assert found[0]["actor"] == "staff"
    # A LIKE wildcard is a character like any other.
    assert support.get("/v1/admin/users", query_string={"q": "%", "reason": WHY}).get_json() == []


def test_staff_read_a_record_the_dpo_corrects_and_exports_it(app, site, conn, anna):
    support, _, _ = staff_member(app, site, conn, email="support@copernica.example")
    dpo, _, _ = staff_member(app, site, conn, role="dpo", email="dpo@copernica.example")
    path = f"/v1/admin/users/{anna['id']}"
    seen = support.get(path, query_string={"reason": WHY})
    assert seen.status_code == 200
    assert seen.get_json()["email"] == "anna@example.com"
    assert seen.get_json()["has_password"] is True and seen.get_json()["second_factor"] is False
    # Support reads; correcting and exporting are the dpo's.
    assert_problem(support.patch(path, query_string={"reason": WHY}, json={"infix": "van"}), 403)
    assert_problem(support.get(f"{path}/export", query_string={"reason": WHY}), 403)
    corrected = dpo.patch(
        path, query_string={"reason": WHY}, json={"last_name": "Vries", "infix": "de"}
    )
    assert corrected.status_code == 200, corrected.get_data(as_text=True)
    assert corrected.get_json()["last_name"] == "Vries"
    assert corrected.get_json()["field_sources"]["infix"]["source"] == "staff"
    # The address is not staff's to change.
    assert_problem(
        dpo.patch(path, query_string={"reason": WHY}, json={"email": "x@example.com"}), 422
    )
    exported = dpo.get(f"{path}/export", query_string={"reason": WHY})
    assert exported.status_code == 200
    assert exported.get_json()["profile"]["last_name"] == "Vries"
    assert events(conn, subject_id=anna["id"], reason=WHY) == [
        "staff.read",
        "staff.corrected",
        "staff.exported",
    ]
    assert trail(conn, event="staff.corrected")[0]["details"] == {"fields": ["infix", "last_name"]}
    # What staff did is in the person's own export, with the reason, without the staff id.
    mine = as_user(app, login(site).get_json()["access_token"]).get("/v1/me/export").get_json()
    read = [e for e in mine["audit_trail"] if e["event"] == "staff.read"]
    assert read and read[0]["reason"] == WHY and read[0]["actor"] == "staff"
    assert "actor_id" not in read[0]


def test_impersonation_acts_as_the_person_named_with_both_and_changes_nothing_of_theirs(
    app, site, conn, anna
):
    support, _, _ = staff_member(app, site, conn)
    staff_id = conn.execute(
        "select id from users where email = 'staff@copernica.example'"
    ).fetchone()["id"]
    given = support.post(f"/v1/admin/users/{anna['id']}/impersonate", query_string={"reason": WHY})
    assert given.status_code == 200, given.get_data(as_text=True)
    body = given.get_json()
    assert "refresh_token" not in body and 0 < body["expires_in"] <= 600
    token = claims(body["access_token"])
    assert token["sub"] == anna["id"] and token["act"] == {"sub": str(staff_id)}
    as_anna = as_user(app, body["access_token"])
    assert as_anna.get("/v1/me").get_json()["email"] == "anna@example.com"
    assert as_anna.patch("/v1/me", json={"first_name": "Anne"}).status_code == 200
    # What takes the account over or away is the person's alone.
    reauth = {"current_password": PASSWORD, **BROWSER}
    for method, path, body_ in (
        ("put", "/v1/me/password", {**reauth, "new_password": "another fine password 42"}),
        ("post", "/v1/me/email", {**reauth, "new_email": "thief@example.com"}),
        ("post", "/v1/me/second-factor/totp", {}),
        ("delete", "/v1/me", reauth),
        ("delete", "/v1/me/identities/google", None),
        ("delete", "/v1/me/sessions", reauth),
    ):
        assert_problem(getattr(as_anna, method)(path, json=body_), 403)
    # Nor is it staff: the token of a person acting as no one's staff.
    assert_problem(as_anna.get("/v1/admin/users", query_string={"q": "a", "reason": WHY}), 403)
    # Every request of it is in the trail with both people; the refusals too.
    requests = trail(conn, event="impersonation.request")
    assert {(r["actor"], str(r["actor_id"]), str(r["subject_id"])) for r in requests} == {
        ("impersonation", str(staff_id), anna["id"])
    }
    assert [r["details"]["method"] for r in requests] == ["GET", "PATCH"]
    assert len(trail(conn, event="impersonation.refused")) == 6
    assert events(conn, event="staff.impersonated", reason=WHY) == ["staff.impersonated"]
    # The person's own sign-ins show it was staff.
    me = as_user(app, login(site).get_json()["access_token"])
    assert any(s["by_staff"] for s in me.get("/v1/me/export").get_json()["sign_ins"])


def test_no_one_acts_as_staff_as_themselves_or_as_a_profile(app, site, conn):
    admin, _, _ = staff_member(app, site, conn, role="admin", email="admin@copernica.example")
    support, _, _ = staff_member(app, site, conn, email="support@copernica.example")
    ids = {
        row["email"]: row["id"] for row in conn.execute("select id, email from users").fetchall()
    }
    profile = site.post("/v1/profiles", json={"email": "p@example.com", "source": "event"})
    for who in (
        ids["support@copernica.example"],
        ids["admin@copernica.example"],
        profile.get_json()["id"],
    ):
        assert_problem(
            admin.post(f"/v1/admin/users/{who}/impersonate", query_string={"reason": WHY}), 403
        )
    assert [r["details"]["reason"] for r in trail(conn, event="impersonation.refused")] == [
        "staff",
        "self",
        "no_account",
    ]
    # The dpo handles requests; acting as people is not among them.
    dpo, _, _ = staff_member(app, site, conn, role="dpo", email="dpo@copernica.example")
    anna = sign_up(site, conn)
    assert_problem(
        dpo.post(f"/v1/admin/users/{anna['id']}/impersonate", query_string={"reason": WHY}), 403
    )
    assert (
        support.post(
            f"/v1/admin/users/{anna['id']}/impersonate", query_string={"reason": WHY}
        ).status_code
        == 200
    )


def test_refusals_are_clear_change_nothing_and_are_recorded(app, site, conn, anna):
    person = as_user(app, login(site).get_json()["access_token"])
    support, password_only, _ = staff_member(app, site, conn)
    path = f"/v1/admin/users/{anna['id']}"
    # Not staff; staff without the second factor's sign-in; a role without the right.
    assert_problem(person.get(path, query_string={"reason": WHY}), 403)
    assert_problem(password_only.get(path, query_string={"reason": WHY}), 403)
    assert_problem(support.delete(path, query_string={"reason": WHY}), 403)
    # No reason, a blank one, a reason of control characters.
    assert_problem(support.get(path), 422, "reason")
    assert_problem(support.get(path, query_string={"reason": "   "}), 422, "reason")
    assert_problem(support.get(path, query_string={"reason": "why\u202e"}), 422, "reason")
    # No token, or another credential: 401.
    assert_problem(app.test_client().get(path, query_string={"reason": WHY}), 401)
    assert_problem(site.get(path, query_string={"reason": WHY}), 401)
    assert conn.execute("select 1 from users where id = %s", (anna["id"],)).fetchone()
    refused = [r["details"]["reason"] for r in trail(conn, event="staff.refused")]
    assert refused == ["not_staff", "not_staff", "role", *["invalid_request"] * 3]
    assert events(conn, event="staff.read") == []


def test_the_trail_is_read_by_person_actor_and_time_newest_first(app, site, conn, anna):
    dpo, _, _ = staff_member(app, site, conn, role="dpo", email="dpo@copernica.example")
    support, _, _ = staff_member(app, site, conn, email="support@copernica.example")
    dpo_id, support_id = (
        conn.execute("select id from users where email = %s", (e,)).fetchone()["id"]
        for e in ("dpo@copernica.example", "support@copernica.example")
    )
    login(site, password="wrong password, twice over")
    support.get(f"/v1/admin/users/{anna['id']}", query_string={"reason": WHY})
    about_anna = dpo.get("/v1/admin/audit", query_string={"reason": WHY, "user_id": anna["id"]})
    assert about_anna.status_code == 200, about_anna.get_data(as_text=True)
    rows = about_anna.get_json()
    assert [r["event"] for r in rows[:2]] == ["staff.read", "login.failed"]
    assert rows[0]["actor_id"] == str(support_id) and rows[0]["reason"] == WHY
    assert rows[1]["actor"] == "site" and rows[1]["client_ip"] == BROWSER["client_ip"]
    by_support = dpo.get(
        "/v1/admin/audit", query_string={"reason": WHY, "actor_id": str(support_id), "limit": 1}
    )
    assert [r["event"] for r in by_support.get_json()] == ["staff.read"]
    assert "Link" in by_support.headers
    later = dpo.get(
        "/v1/admin/audit", query_string={"reason": WHY, "since": "2999-01-01T00:00:00Z"}
    )
    assert later.get_json() == []
    # Reading the trail about a person is reading their data: recorded too.
    assert trail(conn, event="staff.read_trail", actor_id=dpo_id)[0]["subject_id"] is not None
    assert_problem(support.get("/v1/admin/audit", query_string={"reason": WHY}), 403)


def test_the_trail_is_append_only(conn, anna):
    conn.execute(
        "insert into audit_events (event, actor, subject_id) values ('x', 'operator', %s)",
        (anna["id"],),
    )
    # The serving role may not change it at all (identity.store.roles.INSERT_ONLY)...
    with pytest.raises(Exception, match="permission denied"), conn.transaction():
        conn.execute("update audit_events set event = 'y'")


def test_the_roles_that_act_as_people_are_the_table_s():
    from identity.services.staff import STAFF_RIGHTS
    from identity.store.sessions import IMPERSONATING_ROLES

    acting = {role for role, rights in STAFF_RIGHTS.items() if "impersonate" in rights}
    assert set(IMPERSONATING_ROLES) == acting


def test_the_trail_is_append_only_for_its_owner_too(owner_db):
    # ...and its trigger refuses the owner (nothing to change: refused before any row).
    with pytest.raises(Exception, match="append-only"), owner_db.transaction():
        owner_db.execute(
            "insert into audit_events (event, actor) values ('x', 'operator') returning id"
        )
        owner_db.execute("update audit_events set event = 'y'")
