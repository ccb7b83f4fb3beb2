"""Erasure: the person's own (`DELETE /v1/me`) and staff's (`DELETE /v1/admin/users/{id}`).
One transaction takes the person out of every table (a scan of every table afterwards
finds neither their id nor their address); only a keyed hash of the address stays, on a
suppression list that forms and imports honour; the trail keeps that it happened."""

import json

from identity.api.guards import SERVICES
from tests.api.problems import assert_problem
from tests.api.test_accounts import BROWSER, PASSWORD, as_user, login, sign_up
from tests.api.test_admin import WHY, trail
from tests.api.test_export import fill_every_table
from tests.api.test_second_factor import next_code
from tests.api.test_staff import staff_member
from tests.outbox import mailed

NDJSON = "application/x-ndjson"
# Tables that may name an erased person by design: the ledger (their id, to erase them
# again from a restored backup) and nothing else.
LEDGER = {"erasures"}


def traces(conn, *needles: str) -> dict[str, int]:
    """Every table (but the ledger) and how many of its rows hold any of `needles`, in any
    column (the row as text, lowercase): the test of an erasure."""
    tables = [
        row["table_name"]
        for row in conn.execute(
            "select table_name from information_schema.tables"
            " where table_schema = 'public' and table_type = 'BASE TABLE'"
        )
    ]
    found = {}
    for table in sorted(set(tables) - LEDGER):
        rows = conn.execute(f"select t::text as row from {table} t").fetchall()  # noqa: S608
        hits = sum(any(n.lower() in row["row"].lower() for n in needles) for row in rows)
        if hits:
            found[table] = hits
    return found


def _another_admin(conn, company_id: str) -> None:
    other = conn.execute(
        "insert into users (email, email_key, status) values"
        " ('carol@acme.example', 'carol@acme.example', 'registered') returning id"
    ).fetchone()["id"]
    conn.execute(
        "insert into company_members (company_id, user_id, role) values (%s, %s, 'admin')",
        (company_id, other),
    )


def test_the_person_erases_themselves_and_nothing_of_them_is_left(app, site, conn):
    record, me, app_, _, _ = fill_every_table(app, site, conn)
    user_id = record["id"]
    conn.execute("delete from staff_roles where user_id = %s", (user_id,))
    company = me.get("/v1/me").get_json()["companies"][0]["id"]
    _another_admin(conn, company)
    # Staff read the record (a trail entry about her), and she acted on another's record
    # (the invitation made bob's profile: her id as the actor).
    support, _, _ = staff_member(app, site, conn, email="support@copernica.example")
    support.get(f"/v1/admin/users/{user_id}", query_string={"reason": WHY})
    assert traces(conn, user_id)  # there is something to find

    code = next_code(app_, conn)
    erased = me.delete("/v1/me", json={"current_password": PASSWORD, "code": code, **BROWSER})
    assert erased.status_code == 204, erased.get_data(as_text=True)

    assert traces(conn, user_id, "anna@example.com") == {}
    # Her token is dead at once; the company stays with its other admin.
    assert_problem(me.get("/v1/me"), 401)
    assert conn.execute("select name from companies where id = %s", (company,)).fetchone()
    # What stays: the ledger's entry, a hash on the suppression list, and the trail's
    # entry that an erasure happened, naming only the ledger's number.
    (ledger,) = conn.execute("select id, user_id from erasures").fetchall()
    assert str(ledger["user_id"]) == user_id
    assert conn.execute("select count(*) from suppressed_addresses").fetchone()["count"] == 1
    (event,) = trail(conn, event="person.erased")
    assert event["subject_id"] is None and event["actor_id"] is None
    assert event["details"] == {"erasure": ledger["id"]}


def test_erasing_oneself_takes_the_password_or_a_fresh_sign_in(app, site, conn):
    anna = sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    # Wrong password: refused as at a change of password; nothing changed.
    wrong = {"current_password": "not the password at all", **BROWSER}
    assert_problem(me.delete("/v1/me", json=wrong), 422, "current_password")
    # No password, and a sign-in older than five minutes: sign in again.
    conn.execute(
        "update sessions set created_at = now() - interval '6 minutes' where user_id = %s",
        (anna["id"],),
    )
    assert_problem(me.delete("/v1/me", json=BROWSER), 403)
    assert conn.execute("select 1 from users where id = %s", (anna["id"],)).fetchone()
    assert [r["details"]["reason"] for r in trail(conn, event="erasure.refused")] == [
        "not_reauthenticated"
    ]
    # A sign-in just made is proof enough (an account with no password has only this).
    fresh = as_user(app, login(site).get_json()["access_token"])
    assert fresh.delete("/v1/me", json=BROWSER).status_code == 204
    assert conn.execute("select 1 from users where id = %s", (anna["id"],)).fetchone() is None


def test_the_only_admin_of_a_company_and_staff_are_refused_first(app, site, conn):
    anna = sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    company = me.post("/v1/companies", json={"name": "Acme B.V."}).get_json()
    body = {"current_password": PASSWORD, **BROWSER}
    refused = assert_problem(me.delete("/v1/me", json=body), 409, "companies")
    assert refused["errors"]["companies"] == [company["id"]] and "Acme B.V." in refused["detail"]
    _another_admin(conn, company["id"])
    conn.execute("insert into staff_roles (user_id, role) values (%s, 'support')", (anna["id"],))
    assert_problem(me.delete("/v1/me", json=body), 409)
    conn.execute("delete from staff_roles where user_id = %s", (anna["id"],))
    assert me.delete("/v1/me", json=body).status_code == 204
    members = conn.execute(
        "select count(*) from company_members where company_id = %s", (company["id"],)
    ).fetchone()["count"]
    assert members == 1


def test_the_dpo_erases_a_person_on_their_request(app, site, conn):
    anna = sign_up(site, conn)
    dpo, _, _ = staff_member(app, site, conn, role="dpo", email="dpo@copernica.example")
    dpo_id = conn.execute("select id from users where email = 'dpo@copernica.example'").fetchone()[
        "id"
    ]
    path = f"/v1/admin/users/{anna['id']}"
    assert_problem(dpo.delete(path), 422, "reason")
    assert dpo.delete(path, query_string={"reason": WHY}).status_code == 204
    assert_problem(dpo.get(path, query_string={"reason": WHY}), 404)
    assert_problem(dpo.delete(path, query_string={"reason": WHY}), 404)
    assert traces(conn, anna["id"], "anna@example.com") == {}
    (erased,) = trail(conn, event="staff.erased")
    assert erased["reason"] == WHY and erased["actor_id"] == dpo_id
    assert erased["subject_id"] is None and "erasure" in erased["details"]
    # Not oneself through here.
    assert_problem(dpo.delete(f"/v1/admin/users/{dpo_id}", query_string={"reason": WHY}), 409)


def test_an_erased_address_is_subscribed_again_only_with_confirmed_consent(app, site, conn):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    assert me.delete("/v1/me", json={"current_password": PASSWORD, **BROWSER}).status_code == 204
    # An import's consent from elsewhere is not taken for it.
    old = {"consented_at": "2024-03-01T10:00:00Z", "consent_text": "old form"}
    line = json.dumps({"email": "Anna@Example.com", "newsletters": {"copernica-updates": old}})
    imported = site.post("/v1/profiles/import", data=line + "\n", content_type=NDJSON)
    report = [json.loads(row) for row in imported.get_data(as_text=True).splitlines()]
    assert report[0]["newsletters_kept"] == ["copernica-updates"]
    assert conn.execute("select count(*) from subscriptions").fetchone()["count"] == 0
    # A list that asks no confirmation asks one of this address: pending, and a mail.
    consent = {"text": "Updates, please", **BROWSER}
    asked = site.post(
        "/v1/newsletters/copernica-updates/subscriptions",
        json={"email": "anna@example.com", "consent": consent},
    )
    assert asked.get_json()["state"] == "pending"
    token = mailed(conn, "Anna@example.com", "newsletter_confirm")["token"]
    confirmed = site.post("/v1/newsletters/confirm", json={"token": token})
    assert confirmed.get_json()["state"] == "subscribed"
    # Confirmed from the mailbox: the suppression is lifted.
    assert conn.execute("select count(*) from suppressed_addresses").fetchone()["count"] == 0
    bob = {"email": "bob@example.com", "consent": consent}
    assert (
        site.post("/v1/newsletters/copernica-updates/subscriptions", json=bob).get_json()["state"]
        == "subscribed"
    )


def test_the_suppression_list_holds_no_address(app, site, conn):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    me.delete("/v1/me", json={"current_password": PASSWORD, **BROWSER})
    (row,) = conn.execute("select address_hash from suppressed_addresses").fetchall()
    suppression = app.extensions[SERVICES].suppression
    assert bytes(row["address_hash"]) == suppression.hash("anna@example.com")
    assert len(row["address_hash"]) == 32
