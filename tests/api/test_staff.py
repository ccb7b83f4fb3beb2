"""Staff roles: granted by an operator, working only in a sign-in made with a second factor
that is still on; what they give so far: company data, the internal description included."""

from tests.api.problems import assert_problem
from tests.api.test_accounts import BROWSER, PASSWORD, as_user, login, sign_up
from tests.api.test_second_factor import next_code, set_up, turn_on


def staff_member(app, site, conn, role="support", email="staff@copernica.example"):
    """A staff member signed in with their second factor (their client), and one signed in
    with the password alone (a stolen password's sign-in)."""
    record = sign_up(site, conn, email=email)
    first = as_user(app, login(site, email=email).get_json()["access_token"])
    app_ = set_up(first)
    turn_on(first, app_)
    conn.execute("insert into staff_roles (user_id, role) values (%s, %s)", (record["id"], role))
    with_code = login(site, email=email, **BROWSER, code=next_code(app_, conn))
    assert with_code.status_code == 200, with_code.get_data(as_text=True)
    return as_user(app, with_code.get_json()["access_token"]), first, app_


def _company(app, site, conn):
    sign_up(site, conn, email="owner@acme.example")
    owner = as_user(app, login(site, email="owner@acme.example").get_json()["access_token"])
    company = owner.post("/v1/companies", json={"name": "Acme B.V."}).get_json()
    return owner, company


def test_staff_read_any_company_and_keep_its_internal_description(app, site, conn):
    owner, company = _company(app, site, conn)
    assert "internal_description" not in company
    staff, _, _ = staff_member(app, site, conn)
    path = f"/v1/companies/{company['id']}"
    seen = staff.get(path)
    assert seen.status_code == 200
    assert seen.get_json()["your_role"] == "staff"
    assert seen.get_json()["internal_description"] is None
    note = {"internal_description": "Key account; invoices by post."}
    set_ = staff.patch(path, json=note)
    assert (
        set_.status_code == 200
        and set_.get_json()["internal_description"] == note["internal_description"]
    )
    # Staff change nothing else of it; its own people never see the note, nor set one.
    assert_problem(staff.patch(path, json={"city": "Utrecht"}), 403)
    assert "internal_description" not in owner.get(path).get_json()
    assert_problem(owner.patch(path, json=note), 403)
    assert_problem(owner.post("/v1/companies", json={"name": "B", **note}), 403)
    assert staff.get(f"{path}/members").status_code == 200


def test_a_staff_role_does_nothing_without_the_second_factor(app, site, conn):
    _, company = _company(app, site, conn)
    staff, password_only, app_ = staff_member(app, site, conn)
    path = f"/v1/companies/{company['id']}"
    # A sign-in with the password alone: no staff at all.
    assert_problem(password_only.get(path), 404)
    # The factor removed: the staff sign-in made with it is no staff either.
    body = {"current_password": PASSWORD, "code": next_code(app_, conn), **BROWSER}
    assert staff.delete("/v1/me/second-factor/totp", json=body).status_code == 204
    assert_problem(staff.get(path), 404)
    assert_problem(password_only.get(path), 404)


def test_the_dpo_reads_but_does_not_set_the_internal_description(app, site, conn):
    _, company = _company(app, site, conn)
    dpo, _, _ = staff_member(app, site, conn, role="dpo")
    path = f"/v1/companies/{company['id']}"
    assert dpo.get(path).status_code == 200
    assert_problem(dpo.patch(path, json={"internal_description": "x"}), 403)


def test_an_operator_grants_lists_and_revokes_staff_roles(cli, committing_db):
    committing_db.execute(
        "insert into users (email, email_key, status) values"
        " ('staff@copernica.example', 'staff@copernica.example', 'registered'),"
        " ('minimal@copernica.example', 'minimal@copernica.example', 'minimal')"
    )
    cli("staff", "grant", "staff@copernica.example", "support")
    cli("staff", "grant", "staff@copernica.example", "admin")  # replaces
    listed = cli("staff", "list").output
    assert "admin" in listed and "staff@copernica.example" in listed
    assert "NO second factor" in listed
    cli("staff", "grant", "minimal@copernica.example", "dpo", ok=False)  # no account
    cli("staff", "grant", "nobody@copernica.example", "dpo", ok=False)
    cli("staff", "grant", "staff@copernica.example", "root", ok=False)
    cli("staff", "revoke", "staff@copernica.example")
    cli("staff", "revoke", "staff@copernica.example", ok=False)
    assert committing_db.execute("select count(*) from staff_roles").fetchone()["count"] == 0
