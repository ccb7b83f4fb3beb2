"""Hostile round on issue 24's first part (staff roles): what broke, each a failing test
marked xfail(strict) until it is fixed; and what held, where tests/api/test_staff.py and
test_company_access.py do not show it."""

import json
import unicodedata
from pathlib import Path

import pytest

from identity.services.contact import email_key
from tests.api.problems import assert_problem
from tests.api.test_accounts import BROWSER, OTHER_PASSWORD, PASSWORD, as_user, login, sign_up
from tests.api.test_second_factor import next_code, set_up, turn_on
from tests.api.test_staff import staff_member
from tests.outbox import mailed

OPENAPI = json.loads(
    (Path(__file__).resolve().parents[2] / "openapi" / "openapi.json").read_text("utf-8")
)
NOTE = {"internal_description": "Key account; churn risk; do not tell them."}


def _person(app, site, conn, email):
    record = sign_up(site, conn, email=email)
    return as_user(app, login(site, email=email).get_json()["access_token"]), record["id"]


def _id(conn, email):
    return conn.execute("select id from users where email = %s", (email,)).fetchone()["id"]


def _world(app, site, conn):
    """An owner's company, a partner company it chose (with its admin), and a support
    staff member (signed in with the second factor) who wrote the note on the customer."""
    owner, _ = _person(app, site, conn, "owner@acme.example")
    customer = owner.post("/v1/companies", json={"name": "Acme B.V."}).get_json()["id"]
    partner_admin, _ = _person(app, site, conn, "p@partner.example")
    partner = partner_admin.post("/v1/companies", json={"name": "Partner B.V."}).get_json()["id"]
    conn.execute("update companies set is_partner = true where id = %s", (partner,))
    chosen = owner.put(f"/v1/companies/{customer}/partner", json={"partner_id": partner})
    assert chosen.status_code == 200
    staff, first, app_ = staff_member(app, site, conn)
    written = staff.patch(f"/v1/companies/{customer}", json=NOTE)
    assert written.status_code == 200, written.get_data(as_text=True)
    return {
        "owner": owner,
        "customer": customer,
        "partner_admin": partner_admin,
        "partner": partner,
        "staff": staff,
        "first": first,
        "app": app_,
    }


# --- findings ----------------------------------------------------------------------------


def test_the_internal_descriptions_source_is_not_shown_to_non_staff(app, site, conn):
    w = _world(app, site, conn)
    seen = w["owner"].get(f"/v1/companies/{w['customer']}").get_json()
    assert "internal_description" not in seen  # the value itself held
    customers = w["partner_admin"].get(f"/v1/companies/{w['partner']}/customers").get_json()
    assert "internal_description" not in customers[0]
    assert "internal_description" not in seen["field_sources"]
    assert "internal_description" not in customers[0]["field_sources"]


def test_a_factor_removed_and_another_added_does_not_revive_old_sign_ins(app, site, conn):
    w = _world(app, site, conn)
    path = f"/v1/companies/{w['customer']}"
    body = {"current_password": PASSWORD, "code": next_code(w["app"], conn), **BROWSER}
    assert w["first"].delete("/v1/me/second-factor/totp", json=body).status_code == 204
    assert_problem(w["staff"].get(path), 404)
    # The person (or whoever holds the password-only sign-in) turns a new factor on.
    turn_on(w["first"], set_up(w["first"]))
    assert_problem(w["first"].get(path), 404)  # held: a password-only sign-in stays no staff
    assert_problem(w["staff"].get(path), 404)  # the sign-in made with the old factor


def test_a_recovery_code_sign_in_is_no_staff(app, site, conn):
    owner, _ = _person(app, site, conn, "owner@acme.example")
    company = owner.post("/v1/companies", json={"name": "Acme B.V."}).get_json()["id"]
    email = "staff@copernica.example"
    record = sign_up(site, conn, email=email)
    first = as_user(app, login(site, email=email).get_json()["access_token"])
    codes = turn_on(first, set_up(first))
    conn.execute("insert into staff_roles (user_id, role) values (%s, 'admin')", (record["id"],))
    signed_in = login(site, email=email, **BROWSER, code=codes[0])
    assert signed_in.status_code == 200
    by_recovery = as_user(app, signed_in.get_json()["access_token"])
    assert_problem(by_recovery.get(f"/v1/companies/{company}"), 404)


def test_an_empty_patch_by_who_may_not_edit_is_still_refused(app, site, conn):
    w = _world(app, site, conn)
    member, _ = _person(app, site, conn, "m@acme.example")
    w["owner"].post(f"/v1/companies/{w['customer']}/invitations", json={"email": "m@acme.example"})
    token = mailed(conn, "m@acme.example", "company_invitation")["token"]
    assert member.post("/v1/me/invitations/accept", json={"token": token}).status_code == 200
    path = f"/v1/companies/{w['customer']}"
    assert_problem(member.patch(path, json={}), 403)
    assert_problem(w["partner_admin"].patch(path, json={}), 403)


def test_the_openapi_document_says_what_staff_get(app, site, conn):
    schemas = OPENAPI["components"]["schemas"]
    problems = []
    for name in ("Company", "Customer"):
        if "staff" not in schemas[name]["properties"]["your_role"]["enum"]:
            problems.append(f"{name}.your_role lacks staff")
    if "403" not in OPENAPI["paths"]["/v1/companies"]["post"]["responses"]:
        problems.append("POST /v1/companies: no 403")
    # What the service answers a staff member, against the document.
    w = _world(app, site, conn)
    role = w["staff"].get(f"/v1/companies/{w['customer']}").get_json()["your_role"]
    if role not in schemas["Company"]["properties"]["your_role"]["enum"]:
        problems.append(f"GET answers your_role {role!r}, outside the enum")
    assert problems == []


# --- what held ---------------------------------------------------------------------------


def test_no_non_staff_path_shows_or_sets_the_internal_description(app, site, conn):
    w = _world(app, site, conn)
    c, p = w["customer"], w["partner"]
    owner, partner_admin = w["owner"], w["partner_admin"]
    assert "internal_description" not in owner.get(f"/v1/companies/{c}").get_json()
    assert "internal_description" not in partner_admin.get(f"/v1/companies/{c}").get_json()
    customers = partner_admin.get(f"/v1/companies/{p}/customers")
    assert customers.status_code == 200 and "internal_description" not in customers.get_json()[0]
    members = owner.get(f"/v1/companies/{c}/members").get_data(as_text=True)
    assert NOTE["internal_description"] not in members
    again = owner.put(f"/v1/companies/{c}/partner", json={"partner_id": p}).get_json()
    assert "internal_description" not in again
    # The invitation's answer, and /v1/me, of a new member.
    member, _ = _person(app, site, conn, "m@acme.example")
    owner.post(f"/v1/companies/{c}/invitations", json={"email": "m@acme.example"})
    token = mailed(conn, "m@acme.example", "company_invitation")["token"]
    accepted = member.post("/v1/me/invitations/accept", json={"token": token})
    assert accepted.status_code == 200 and "internal_description" not in accepted.get_json()
    assert NOTE["internal_description"] not in member.get("/v1/me").get_data(as_text=True)
    # Setting it: null, empty, with other fields, a spelling of its name; POST and PATCH.
    for body in (
        {"internal_description": None},
        {"internal_description": ""},
        NOTE | {"city": "X"},
    ):
        assert_problem(owner.patch(f"/v1/companies/{c}", json=body), 403)
        assert_problem(owner.post("/v1/companies", json={"name": "B", **body}), 403)
        assert_problem(member.patch(f"/v1/companies/{c}", json=body), 403)
        assert_problem(partner_admin.patch(f"/v1/companies/{c}", json=body), 403)
    odd = owner.patch(f"/v1/companies/{c}", json={"Internal_Description": "x"})
    assert odd.status_code in (400, 422)
    # The staff member's own password-only sign-in neither.
    assert_problem(w["first"].patch(f"/v1/companies/{c}", json=NOTE), 404)
    stored = conn.execute("select internal_description from companies where id = %s", (c,))
    assert stored.fetchone()["internal_description"] == NOTE["internal_description"]


def test_a_revoked_role_and_a_password_reset_end_staff_at_the_next_request(app, site, conn):
    w = _world(app, site, conn)
    path = f"/v1/companies/{w['customer']}"
    staff = w["staff"]
    conn.execute("delete from staff_roles")
    assert_problem(staff.get(path), 404)
    assert_problem(staff.patch(path, json=NOTE), 404)  # a stranger again
    conn.execute(
        "insert into staff_roles (user_id, role)"
        " select id, 'dpo' from users where email = 'staff@copernica.example'"
    )
    assert staff.get(path).status_code == 200  # a role changed counts at once, too
    assert_problem(staff.patch(path, json=NOTE), 403)  # dpo: reads only
    site.post("/v1/auth/password-reset", json={"email": "staff@copernica.example", **BROWSER})
    token = mailed(conn, "staff@copernica.example", "password_reset")["token"]
    confirm = {"token": token, "new_password": OTHER_PASSWORD, **BROWSER}
    assert site.post("/v1/auth/password-reset/confirm", json=confirm).status_code == 204
    assert_problem(staff.get(path), 401)


def test_a_refreshed_password_only_sign_in_borrows_nothing_from_the_mfa_one(app, site, conn):
    owner, _ = _person(app, site, conn, "owner@acme.example")
    company = owner.post("/v1/companies", json={"name": "Acme B.V."}).get_json()["id"]
    email = "staff@copernica.example"
    record = sign_up(site, conn, email=email)
    before = login(site, email=email).get_json()  # password only, before factor and role
    first = as_user(app, before["access_token"])
    app_ = set_up(first)
    turn_on(first, app_)
    conn.execute("insert into staff_roles (user_id, role) values (%s, 'admin')", (record["id"],))
    with_code = login(site, email=email, **BROWSER, code=next_code(app_, conn)).get_json()
    path = f"/v1/companies/{company}"
    assert as_user(app, with_code["access_token"]).get(path).status_code == 200
    refreshed = site.post("/v1/auth/refresh", json={"refresh_token": before["refresh_token"]})
    assert refreshed.status_code == 200
    assert_problem(as_user(app, refreshed.get_json()["access_token"]).get(path), 404)
    # The mfa sign-in's refresh keeps it staff.
    again = site.post("/v1/auth/refresh", json={"refresh_token": with_code["refresh_token"]})
    assert as_user(app, again.get_json()["access_token"]).get(path).status_code == 200


def test_staff_who_belong_to_a_company_keep_their_roles_rights_and_no_more(app, site, conn):
    owner, _ = _person(app, site, conn, "owner@acme.example")
    c = owner.post("/v1/companies", json={"name": "Acme B.V."}).get_json()["id"]
    support, _, _ = staff_member(app, site, conn, role="support")
    dpo, _, _ = staff_member(app, site, conn, role="dpo", email="dpo@copernica.example")
    for email in ("staff@copernica.example", "dpo@copernica.example"):
        owner.post(f"/v1/companies/{c}/invitations", json={"email": email})
        token = mailed(conn, email, "company_invitation")["token"]
        who = support if email.startswith("staff") else dpo
        assert who.post("/v1/me/invitations/accept", json={"token": token}).status_code == 200
    path = f"/v1/companies/{c}"
    assert dpo.get(path).get_json()["your_role"] == "member"
    assert_problem(dpo.patch(path, json=NOTE), 403)  # a dpo member: still no note
    assert_problem(support.patch(path, json={"city": "Utrecht"}), 403)  # a member: no edit
    assert_problem(support.patch(path, json=NOTE | {"city": "Utrecht"}), 403)
    assert support.patch(path, json=NOTE).status_code == 200
    assert support.get(path).get_json()["internal_description"] == NOTE["internal_description"]
    # Made admin: the company's fields and the note together.
    support_id = _id(conn, "staff@copernica.example")
    assert owner.patch(f"{path}/members/{support_id}", json={"role": "admin"}).status_code == 200
    both = support.patch(path, json={"city": "Utrecht", "internal_description": None})
    assert both.status_code == 200 and both.get_json()["internal_description"] is None
    assert_problem(dpo.patch(path, json={"internal_description": None, "city": "X"}), 403)


def test_impersonation_is_staff_work_only(app, site, conn):
    w = _world(app, site, conn)
    owner_id = _id(conn, "owner@acme.example")
    # A staff token is no site key: the person endpoints of sites stay closed to it.
    assert w["staff"].get(f"/v1/users/{owner_id}").status_code in (401, 403)
    # Acting as a person (issue 24) is one operation, staff's, with the staff scheme.
    acting = [
        (path, method)
        for path, item in OPENAPI["paths"].items()
        for method, operation in item.items()
        if "impersonat" in json.dumps(operation).lower()
    ]
    assert {path for path, _ in acting} == {"/v1/admin/users/{user_id}/impersonate"}
    operation = OPENAPI["paths"]["/v1/admin/users/{user_id}/impersonate"]["post"]
    assert operation["security"] == [{"staff": []}]
    # Its token says nothing of acting as another.
    me = w["staff"].get("/v1/me").get_json()
    assert me["email"] == "staff@copernica.example"


@pytest.mark.parametrize(
    "args",
    [
        ("staff", "grant", "a\x00b@copernica.example", "support"),
        ("staff", "revoke", "staff@copernica.example\x00"),
        ("staff", "grant", "x@\udcff.example", "support"),
        ("staff", "grant", "", "dpo"),
        ("staff", "grant", "staff@copernica.example", "SUPPORT"),
        ("staff", "grant", "staff@copernica.example", "\u0130"),  # İ
        ("staff", "revoke", "nobody@copernica.example"),
    ],
)
def test_odd_cli_input_is_a_message_not_a_traceback(cli, committing_db, args):
    committing_db.execute(
        "insert into users (email, email_key, status) values"
        " ('staff@copernica.example', 'staff@copernica.example', 'registered')"
    )
    result = cli(*args, ok=False)
    assert isinstance(result.exception, SystemExit), result.exc_info
    assert "Traceback" not in result.output
    assert committing_db.execute("select count(*) from staff_roles").fetchone()["count"] == 0


def test_the_cli_finds_a_non_ascii_address_by_its_caseless_key(cli, committing_db):
    stored = "stra\u00dfe.\u0130lkay@copernica.example"  # straße.İlkay
    committing_db.execute(
        "insert into users (email, email_key, status) values (%s, %s, 'registered')",
        (stored, email_key(stored)),
    )
    spelled = unicodedata.normalize("NFD", "STRASSE.i\u0307LKAY@COPERNICA.EXAMPLE")
    cli("staff", "grant", spelled, "dpo")
    assert "dpo" in cli("staff", "list").output
    cli("staff", "revoke", stored)
    assert committing_db.execute("select count(*) from staff_roles").fetchone()["count"] == 0
