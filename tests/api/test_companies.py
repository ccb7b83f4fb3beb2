"""Companies through the HTTP API, as their people use them: a company made and changed,
its fields checked, members and their roles, invitations mailed and accepted, the partner
model; on a real PostgreSQL, the mails read back from the outbox."""

import pytest

from tests.api.problems import assert_problem
from tests.api.test_accounts import as_user, login, sign_up
from tests.outbox import mailed

ACME = {
    "name": "Acme B.V.",
    "street": "Herengracht",
    "house_number": "101-A",
    "postal_code": "1015 BE",
    "city": "Amsterdam",
    "province": "Noord-Holland",
    "country": "nl",
    "attention_of": "Accounts payable",
    "email": "Info@ACME.example",
    "phone": "020 123 4567",
    "vat_number": "NL 0044.95.445.B01",
    "bank_account": "nl91 abna 0417 1643 00",
}


def person(app, site, conn, email):
    """A signed-in person (their client, with the access token) and their record."""
    record = sign_up(site, conn, email=email, first_name=email.split("@")[0].title())
    client = as_user(app, login(site, email=email).get_json()["access_token"])
    return client, record


@pytest.fixture
def anna(app, site, conn):
    return person(app, site, conn, "anna@acme.example")


@pytest.fixture
def bob(app, site, conn):
    return person(app, site, conn, "bob@acme.example")


def make(client, **fields):
    answer = client.post("/v1/companies", json={**ACME, **fields})
    assert answer.status_code == 201, answer.get_data(as_text=True)
    return answer.get_json()


def invite_and_accept(conn, admin, company, who, email, role="member"):
    invited = admin.post(
        f"/v1/companies/{company['id']}/invitations", json={"email": email, "role": role}
    )
    assert invited.status_code == 201, invited.get_data(as_text=True)
    token = mailed(conn, email, "company_invitation")["token"]
    accepted = who.post("/v1/me/invitations/accept", json={"token": token})
    assert accepted.status_code == 200, accepted.get_data(as_text=True)
    return accepted.get_json()


# --- the profile ------------------------------------------------------------------------


def test_a_company_is_made_with_every_field_checked_and_kept_compact(anna):
    me, record = anna
    company = make(me)
    assert company["your_role"] == "admin"
    assert (company["country"], company["email"], company["phone"]) == (
        "NL",
        "info@acme.example",
        "+31201234567",
    )
    assert (company["vat_number"], company["bank_account"]) == (
        "NL004495445B01",
        "NL91ABNA0417164300",
    )
    assert company["field_sources"]["name"]["by"] == record["id"]
    assert company["field_sources"]["name"]["site"] == "copernica.com"
    assert me.get(f"/v1/companies/{company['id']}").get_json() == company
    # The person's record lists it.
    assert me.get("/v1/me").get_json()["companies"] == [
        {"id": company["id"], "name": "Acme B.V.", "role": "admin"}
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("country", "XX"),
        ("country", "NLD"),
        ("phone", "12"),
        ("email", "not an address"),
        ("vat_number", "NL004495445B00"),
        ("vat_number", "XX123"),
        ("bank_account", "NL91ABNA0417164301"),
        ("name", ""),
        ("name", "a\u202ename"),
    ],
)
def test_a_field_that_does_not_check_out_is_a_422_naming_it(anna, conn, field, value):
    me, _ = anna
    body = {**ACME, "phone": "+31201234567", field: value}
    assert_problem(me.post("/v1/companies", json=body), 422, field)
    assert conn.execute("select count(*) from companies").fetchone()["count"] == 0


def test_a_vat_number_without_its_prefix_takes_the_companys_country(anna):
    me, _ = anna
    assert make(me, vat_number="004495445B01")["vat_number"] == "NL004495445B01"
    belgian = make(me, country="BE", phone="+3222345678", vat_number="0403019261")
    assert belgian["vat_number"] == "BE0403019261"


def test_an_admin_changes_the_company_and_the_change_says_who(anna, bob, conn):
    me, _ = anna
    company = make(me)
    changed = me.patch(f"/v1/companies/{company['id']}", json={"city": "Utrecht", "phone": None})
    assert changed.status_code == 200
    body = changed.get_json()
    assert (body["city"], body["phone"]) == ("Utrecht", None)
    assert body["field_sources"]["city"]["source"] == "person"
    assert_problem(me.patch(f"/v1/companies/{company['id']}", json={"name": None}), 422, "name")
    assert_problem(me.patch(f"/v1/companies/{company['id']}", json={"iban": "x"}), 422, "iban")


# --- members ---------------------------------------------------------------------------


def test_an_invitation_is_mailed_and_accepted_by_the_invited_account(app, site, conn, anna):
    me, _ = anna
    company = make(me)
    invited = me.post(
        f"/v1/companies/{company['id']}/invitations", json={"email": "bob@acme.example"}
    )
    assert invited.status_code == 201
    # A new address: a minimal profile, source invitation, and the mail.
    bob_record = conn.execute("select * from users where email = 'bob@acme.example'").fetchone()
    assert bob_record["status"] == "minimal"
    assert bob_record["field_sources"]["email"]["source"] == "invitation"
    mail = mailed(conn, "bob@acme.example", "company_invitation")
    assert mail["company"] == "Acme B.V."
    # Inviting again duplicates nothing: one record, one open invitation, a new link.
    me.post(f"/v1/companies/{company['id']}/invitations", json={"email": "BOB@acme.example"})
    assert conn.execute("select count(*) from users").fetchone()["count"] == 2
    listed = me.get(f"/v1/companies/{company['id']}/invitations").get_json()
    assert [i["email"] for i in listed] == ["bob@acme.example"]
    # Bob registers with that address (the profile becomes his account) and accepts.
    bob, _ = person(app, site, conn, "bob@acme.example")
    assert_problem(bob.post("/v1/me/invitations/accept", json={"token": mail["token"]}), 422)
    token = mailed(conn, "bob@acme.example", "company_invitation")["token"]
    accepted = bob.post("/v1/me/invitations/accept", json={"token": token})
    assert accepted.status_code == 200
    assert accepted.get_json()["your_role"] == "member"
    assert bob.get("/v1/me").get_json()["companies"][0]["role"] == "member"
    members = me.get(f"/v1/companies/{company['id']}/members").get_json()
    assert [(m["email"], m["role"]) for m in members] == [
        ("anna@acme.example", "admin"),
        ("bob@acme.example", "member"),
    ]
    assert set(members[0]) == {
        "user_id",
        "email",
        "first_name",
        "infix",
        "last_name",
        "phone",
        "mobile",
        "role",
        "joined_at",
    }
    assert me.get(f"/v1/companies/{company['id']}/invitations").get_json() == []
    # Someone who belongs already is not invited again.
    again = me.post(
        f"/v1/companies/{company['id']}/invitations", json={"email": "bob@acme.example"}
    )
    assert_problem(again, 409)


def test_an_invitation_accepted_by_another_account_is_refused(app, site, conn, anna, bob):
    me, _ = anna
    company = make(me)
    me.post(f"/v1/companies/{company['id']}/invitations", json={"email": "carol@acme.example"})
    token = mailed(conn, "carol@acme.example", "company_invitation")["token"]
    bob_client, _ = bob
    assert_problem(bob_client.post("/v1/me/invitations/accept", json={"token": token}), 403)
    carol, _ = person(app, site, conn, "carol@acme.example")
    assert carol.post("/v1/me/invitations/accept", json={"token": token}).status_code == 200


def test_a_withdrawn_invitation_no_longer_works(app, site, conn, anna):
    me, _ = anna
    company = make(me)
    invited = me.post(
        f"/v1/companies/{company['id']}/invitations", json={"email": "carol@acme.example"}
    ).get_json()
    token = mailed(conn, "carol@acme.example", "company_invitation")["token"]
    path = f"/v1/companies/{company['id']}/invitations/{invited['id']}"
    assert me.delete(path).status_code == 204
    assert_problem(me.delete(path), 404)
    carol, _ = person(app, site, conn, "carol@acme.example")
    assert_problem(carol.post("/v1/me/invitations/accept", json={"token": token}), 422)


def test_roles_change_and_the_last_admin_stays(app, site, conn, anna, bob):
    me, _ = anna
    bob_client, bob_record = bob
    anna_id = me.get("/v1/me").get_json()["id"]
    company = make(me)
    invite_and_accept(conn, me, company, bob_client, "bob@acme.example")
    members = f"/v1/companies/{company['id']}/members"
    # The last admin can neither step down nor leave.
    assert_problem(me.patch(f"{members}/{anna_id}", json={"role": "member"}), 409)
    assert_problem(me.delete(f"{members}/{anna_id}"), 409)
    # A member cannot change roles or remove others.
    assert_problem(bob_client.patch(f"{members}/{anna_id}", json={"role": "member"}), 403)
    assert_problem(bob_client.delete(f"{members}/{anna_id}"), 403)
    promoted = me.patch(f"{members}/{bob_record['id']}", json={"role": "admin"})
    assert promoted.get_json()["role"] == "admin"
    assert me.patch(f"{members}/{anna_id}", json={"role": "member"}).status_code == 200
    assert_problem(me.patch(f"{members}/{anna_id}", json={"role": "owner"}), 422, "role")
    # Anna, a member now, leaves; she keeps her own record.
    assert me.delete(f"{members}/{anna_id}").status_code == 204
    assert_problem(me.get(f"/v1/companies/{company['id']}"), 404)
    assert me.get("/v1/me").get_json()["companies"] == []


# --- partners --------------------------------------------------------------------------


def test_a_partner_reads_its_customers_and_nothing_else(app, site, conn, anna, bob):
    customer_admin, _ = anna
    partner_admin, _ = bob
    customer = make(customer_admin)
    partner = make(partner_admin, name="Partner & Co", vat_number=None, bank_account=None)
    # Only a company flagged as partner may be chosen.
    put = customer_admin.put(
        f"/v1/companies/{customer['id']}/partner", json={"partner_id": partner["id"]}
    )
    assert_problem(put, 422, "partner_id")
    conn.execute("update companies set is_partner = true where id = %s", (partner["id"],))
    put = customer_admin.put(
        f"/v1/companies/{customer['id']}/partner", json={"partner_id": partner["id"]}
    )
    assert put.status_code == 200 and put.get_json()["partner_id"] == partner["id"]
    # The partner's people read the customer and its people's contact data...
    seen = partner_admin.get(f"/v1/companies/{customer['id']}")
    assert seen.status_code == 200 and seen.get_json()["your_role"] == "partner"
    people = partner_admin.get(f"/v1/companies/{customer['id']}/members").get_json()
    assert [p["email"] for p in people] == ["anna@acme.example"]
    customers = partner_admin.get(f"/v1/companies/{partner['id']}/customers").get_json()
    assert [(c["id"], [m["email"] for m in c["members"]]) for c in customers] == [
        (customer["id"], ["anna@acme.example"])
    ]
    # ...and change nothing.
    assert_problem(partner_admin.patch(f"/v1/companies/{customer['id']}", json={"city": "X"}), 403)
    invite = partner_admin.post(
        f"/v1/companies/{customer['id']}/invitations", json={"email": "x@acme.example"}
    )
    assert_problem(invite, 403)
    # The customer's own people do not see the partner's customers.
    assert_problem(customer_admin.get(f"/v1/companies/{partner['id']}/customers"), 404)
    # Dropping the partner takes effect on the next request.
    assert customer_admin.delete(f"/v1/companies/{customer['id']}/partner").status_code == 204
    assert_problem(partner_admin.get(f"/v1/companies/{customer['id']}"), 404)
    assert partner_admin.get(f"/v1/companies/{partner['id']}/customers").get_json() == []


def test_the_customers_come_a_page_at_a_time(app, site, conn, anna, bob):
    customer_admin, _ = anna
    partner_admin, _ = bob
    partner = make(partner_admin, name="Partner")
    conn.execute("update companies set is_partner = true where id = %s", (partner["id"],))
    made = []
    for n in range(5):
        company = make(customer_admin, name=f"Customer {n}")
        customer_admin.put(
            f"/v1/companies/{company['id']}/partner", json={"partner_id": partner["id"]}
        )
        made.append(company["id"])
    seen, url = [], f"/v1/companies/{partner['id']}/customers?limit=2"
    while url:
        page = partner_admin.get(url)
        seen += [c["id"] for c in page.get_json()]
        link = page.headers.get("Link")
        url = link[1 : link.index(">")] if link else None
    assert seen == sorted(made)


def test_the_partner_flag_is_an_operators(cli, committing_db, database_url):
    company = committing_db.execute(
        "insert into companies (name) values ('Partner') returning id"
    ).fetchone()["id"]
    cli("companies", "partner", str(company))
    assert committing_db.execute(
        "select is_partner from companies where id = %s", (company,)
    ).fetchone()["is_partner"]
    cli("companies", "partner", str(company), "--off")
    cli("companies", "partner", "3b0c5d1e-7f2a-4b8c-9d6e-1a2b3c4d5e6f", ok=False)
