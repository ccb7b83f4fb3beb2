"""The person's export: everything stored about them, as one document. A test fills every
table that names a user for one person and checks that each has its place in the export
and that no secret is in it; a new table without a place fails here."""

import io
import json

from PIL import Image

from identity.store.export import EXPORTED
from tests.api.test_accounts import BROWSER, PASSWORD, as_user, login, sign_up
from tests.api.test_second_factor import set_up, turn_on
from tests.outbox import mailed
from tests.store.test_users import foreign_keys_to_users


def test_every_table_that_names_a_user_has_its_place_in_the_export(conn):
    assert foreign_keys_to_users(conn) == set(EXPORTED)


def fill_every_table(app, site, conn):
    """One person (anna@example.com) with a row in every table that names a user: their
    record, the signed-in client, their authenticator app, recovery codes and the token of
    a pending confirmation."""
    record = sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    user_id = record["id"]
    # Newsletters: a double opt-in asked (flag, consent event, pending confirmation).
    consent = {"text": "Yes, mail me", **BROWSER}
    site.post(
        "/v1/newsletters/copernica/subscriptions",
        json={"email": "anna@example.com", "consent": consent},
    )
    confirmation = mailed(conn, "anna@example.com", "newsletter_confirm")["token"]
    # A company and an invitation sent; a picture.
    company = me.post("/v1/companies", json={"name": "Acme B.V."}).get_json()["id"]
    me.post(f"/v1/companies/{company}/invitations", json={"email": "bob@acme.example"})
    picture = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(picture, "PNG")
    assert (
        me.put("/v1/me/picture", data=picture.getvalue(), content_type="image/png").status_code
        == 200
    )
    # A second factor and its recovery codes, and a login waiting for its code.
    app_ = set_up(me)
    recovery = turn_on(me, app_)
    assert login(site).get_json()["mfa_required"] is True
    # What has no endpoint a test can reach cheaply, written as the services write it.
    conn.execute(
        "insert into notification_settings (user_id, dashboard, event, channels)"
        " values (%s, 'smtpeter', 'bounce-rate', array['email'])",
        (user_id,),
    )
    conn.execute(
        "insert into social_identities (provider, subject, user_id, joined_site)"
        " values ('google', 'g-123', %s, 'copernica.com')",
        (user_id,),
    )
    conn.execute("insert into staff_roles (user_id, role) values (%s, 'support')", (user_id,))

    return record, me, app_, recovery, confirmation


def test_the_export_holds_every_table_and_no_secret(app, site, conn):
    record, me, app_, recovery, confirmation = fill_every_table(app, site, conn)
    user_id = record["id"]
    answer = me.get("/v1/me/export")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    document = answer.get_json()
    empty = [name for name in EXPORTED.values() if document.get(name) in (None, [], {})]
    assert empty == []
    assert document["profile"]["email"] == "anna@example.com"
    assert document["newsletters"][0] == {
        "newsletter": "copernica",
        "state": "pending",
        "changed_at": document["newsletters"][0]["changed_at"],
    }
    assert document["consent_events"][0]["consent_text"] == "Yes, mail me"
    assert document["recovery_codes"] == {"left": 10, "used": 0}
    assert document["social_identities"][0]["subject"] == "g-123"
    assert document["earlier_passwords"]["kept"] >= 1
    # No secret: not the password, its hash, the factor's secret, a recovery code or a
    # mailed token.
    text = answer.get_data(as_text=True)
    stored = conn.execute("select password_hash from users where id = %s", (user_id,)).fetchone()[
        "password_hash"
    ]
    for secret in (PASSWORD, stored, app_.secret, recovery[0], confirmation):
        assert secret not in text
    json.loads(text)  # one document


def test_only_the_signed_in_person_and_a_site_key_gets_nothing(site, client):
    assert site.get("/v1/me/export").status_code == 401
    assert client.get("/v1/me/export").status_code == 401
