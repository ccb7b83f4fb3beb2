"""Hostile round 24: `GET /v1/me/export` (identity.store.export). Findings are strict
xfails; the rest holds what no other test covers."""

import base64
import io
import re
import time
import unicodedata
import uuid

from PIL import Image

from identity.api.guards import SERVICES
from tests.api.test_accounts import BROWSER, as_user, login, register, sign_up
from tests.api.test_newsletters import subscribe
from tests.api.test_second_factor import set_up, turn_on
from tests.api.test_staff import staff_member

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
TIMESTAMP_KEYS = re.compile(r"(_at|^at|^oldest|^exported_at)$")


def _anna(app, site, conn, email="anna@example.com"):
    record = sign_up(site, conn, email=email)
    return record, as_user(app, login(site, email=email).get_json()["access_token"])


def _export(me):
    answer = me.get("/v1/me/export")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer


def _secrets(conn) -> list[str]:
    """Every stored secret of every record, in every form it could appear in JSON."""
    found = []
    for table, column in (
        ("users", "password_hash"),
        ("password_history", "password_hash"),
        ("account_tokens", "token_hash"),
        ("account_tokens", "payload->>'password_hash'"),
        ("refresh_tokens", "token_hash"),
        ("login_challenges", "token_hash"),
        ("recovery_codes", "code_hash"),
        ("second_factors", "secret_sealed"),
        ("newsletter_confirmations", "token_hash"),
        ("site_keys", "key_hash"),
    ):
        for row in conn.execute(f"select {column} as v from {table}"):  # noqa: S608
            value = row["v"]
            if value is None:
                continue
            if isinstance(value, bytes | memoryview):
                value = bytes(value)
                found += [value.hex(), base64.b64encode(value).decode()[:20]]
            else:
                found.append(value)
    return found


def _walk(node, key=""):
    if isinstance(node, dict):
        for name, value in node.items():
            yield from _walk(value, name)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, key)
    else:
        yield key, node


def test_no_stored_secret_nor_a_live_token_is_in_the_export(app, site, conn):
    record, me = _anna(app, site, conn)
    subscribe(site, key="copernica")  # a double opt-in: a mailed token's hash
    app_ = set_up(me)
    recovery = turn_on(me, app_)
    second_step = login(site).get_json()
    assert second_step["mfa_required"] is True
    # A registration again for her address: a pending password kept in a token's payload.
    register(site, password="another quite long passphrase 77")
    conn.execute(
        "insert into account_tokens (token_hash, purpose, user_id, payload, expires_at, mailed)"
        " values ('\\x01020304050607080910111213141516', 'verify_email', %s,"
        ' \'{"password_hash": "$argon2id$v=19$m=65536,t=3,p=4$planted$planted"}\','
        " now() + interval '1 day', true)",
        (record["id"],),
    )
    text = _export(me).get_data(as_text=True)
    secrets = _secrets(conn) + recovery + [app_.secret]
    secrets += [value for key, value in second_step.items() if "token" in key and value]
    assert len(secrets) > 20
    assert [secret for secret in secrets if secret in text] == []
    assert "argon2" not in text and "planted" not in text


def test_another_persons_data_stays_out(app, site, conn):
    _, me = _anna(app, site, conn)
    carl, _ = _anna(app, site, conn, email="carl@example.com")
    company = me.post("/v1/companies", json={"name": "Acme B.V."}).get_json()["id"]
    invited = me.post(f"/v1/companies/{company}/invitations", json={"email": "bob@acme.example"})
    assert invited.status_code in (200, 201), invited.get_data(as_text=True)
    conn.execute(
        "insert into company_members (company_id, user_id, role) values (%s, %s, 'member')",
        (company, carl["id"]),
    )
    subscribe(site, key="copernica-updates", email="carl@example.com")
    login(site, email="carl@example.com", password="wrong password for carl 12")
    document = _export(me).get_json()
    text = str(document)
    assert "bob@acme" not in text and "carl" not in text and str(carl["id"]) not in text
    assert [i["direction"] for i in document["invitations"]] == ["sent"]
    assert document["consent_events"] == []
    bob = conn.execute("select id from users where email = 'bob@acme.example'").fetchone()
    assert bob is None or str(bob["id"]) not in text


def test_a_list_retired_from_the_catalog_keeps_its_flag_and_consent_events_in_the_export(
    app, site, conn
):
    _, me = _anna(app, site, conn)
    subscribe(site, key="copernica-updates")
    before = _export(me).get_json()
    assert len(before["consent_events"]) == 1 and len(before["newsletters"]) == 1
    conn.execute("delete from newsletters where key = 'copernica-updates'")
    app.extensions[SERVICES].newsletters._catalog = None
    after = _export(me).get_json()
    stored = conn.execute("select count(*) as n from consent_events").fetchone()["n"]
    assert stored == 1
    # The proof of consent stays stored, but the export's inner join on the catalog drops it.
    assert len(after["consent_events"]) == 1
    assert len(after["newsletters"]) == 1


def test_every_list_and_a_one_click_unsubscribe_are_in_the_export(app, site, conn, client):
    record, me = _anna(app, site, conn)
    for key in ("copernica-updates", "copernica", "smtpeter", "mailerq"):
        subscribe(site, key=key)
    tokens = app.extensions[SERVICES].newsletters.tokens
    answer = client.post(
        f"/v1/unsubscribe/{tokens.sign(uuid.UUID(str(record['id'])), 2)}",
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    document = _export(me).get_json()
    assert {n["newsletter"] for n in document["newsletters"]} == {
        "copernica-updates",
        "copernica",
        "smtpeter",
        "mailerq",
    }
    last = document["consent_events"][-1]
    assert (last["newsletter"], last["action"], last["channel"]) == (
        "copernica-updates",
        "unsubscribe",
        "one-click",
    )
    fields = set(document["profile"]["field_sources"])
    filled = {k for k, v in document["profile"].items() if k in fields or v is None}
    assert fields and fields <= set(document["profile"])
    assert filled


def _png() -> bytes:
    picture = io.BytesIO()
    Image.effect_noise((64, 64), 90).convert("RGB").save(picture, "PNG")
    return picture.getvalue()


def test_the_picture_round_trips_through_a_lenient_base64_decoder(app, site, conn):
    _, me = _anna(app, site, conn)
    png = _png()
    assert me.put("/v1/me/picture", data=png, content_type="image/png").status_code == 200
    stored = bytes(conn.execute("select data from pictures").fetchone()["data"])
    exported = _export(me).get_json()["picture"]
    assert base64.b64decode(exported["data_base64"]) == stored
    assert Image.open(io.BytesIO(stored)).format == "PNG"


def test_the_picture_is_plain_rfc_4648_base64(app, site, conn):
    _, me = _anna(app, site, conn)
    png = _png()
    assert me.put("/v1/me/picture", data=png, content_type="image/png").status_code == 200
    exported = _export(me).get_json()["picture"]["data_base64"]
    assert "\n" not in exported
    assert base64.b64decode(exported, validate=True) == bytes(
        conn.execute("select data from pictures").fetchone()["data"]
    )


def test_a_fresh_record_has_the_documented_shape_rfc_3339_and_no_store(app, site, conn):
    from identity.api.me import _EXPORT_EXAMPLE

    _, me = _anna(app, site, conn)
    answer = _export(me)
    assert answer.mimetype == "application/json"
    assert answer.headers["Cache-Control"] == "no-store"
    document = answer.get_json()
    assert set(document) == set(_EXPORT_EXAMPLE)
    for name, documented in _EXPORT_EXAMPLE.items():
        if documented == [] or documented is None:
            assert document[name] == documented or (documented == [] and document[name]), name
        else:
            assert type(document[name]) is type(documented), name
    assert document["earlier_passwords"]["kept"] >= 1
    assert document["recovery_codes"] == {"left": 0, "used": 0}
    stamps = [v for k, v in _walk(document) if TIMESTAMP_KEYS.search(k) and v is not None]
    assert len(stamps) > 5
    assert [s for s in stamps if not RFC3339.match(s)] == []


def test_a_record_without_password_and_a_staff_member_export(app, site, conn):
    record, me = _anna(app, site, conn)
    conn.execute("update users set password_hash = null where id = %s", (record["id"],))
    document = _export(me).get_json()
    assert document["profile"]["has_password"] is False
    staff, _, _ = staff_member(app, site, conn)
    document = _export(staff).get_json()
    assert document["staff_role"]["role"] == "support"
    assert document["second_factor"]["kind"] == "totp"
    assert document["recovery_codes"]["left"] == 10


def test_odd_unicode_and_a_long_consent_text_are_no_500(app, site, conn):
    """Through the API (what validation lets in) and as an import or old data could have
    stored it (bidi controls, noncharacters, astral planes): exported whole, no 500."""
    record, me = _anna(app, site, conn)
    accepted = "A\u0301nna \U0001f469\u200d\U0001f4bb \u00df\u0130"
    assert me.patch("/v1/me", json={"first_name": accepted}).status_code == 200
    too_long = {"text": "x" * 10_000, **BROWSER}
    refused = site.post(
        "/v1/newsletters/copernica/subscriptions",
        json={"email": "anna@example.com", "consent": too_long},
    )
    assert refused.status_code == 422  # the API keeps consent texts to 2,000 characters
    consent = {"text": "Ja " + "\u00e9" * 1997, **BROWSER}
    subscribed = site.post(
        "/v1/newsletters/copernica/subscriptions",
        json={"email": "anna@example.com", "consent": consent},
    )
    assert subscribed.status_code < 300, subscribed.get_data(as_text=True)
    document = _export(me).get_json()
    assert document["profile"]["first_name"] == unicodedata.normalize("NFC", accepted)
    assert document["consent_events"][0]["consent_text"] == consent["text"]
    stored = '\u202eAnna\ufeff\uffff\U0010fffd\\"</script>\u2028'
    conn.execute(
        "update users set last_name = %s, suffix = %s where id = %s",
        (stored, "\U0001d11e" * 3000, record["id"]),
    )
    conn.execute(
        "insert into consent_events (user_id, newsletter, action, state, consent_text,"
        " channel, user_agent) values (%s, 2, 'subscribe', 'subscribed', %s, 'import', %s)",
        (record["id"], stored * 2000, stored),
    )
    document = _export(me).get_json()
    assert document["profile"]["last_name"] == stored
    assert document["consent_events"][-1]["consent_text"] == stored * 2000


def test_ten_thousand_login_attempts_are_all_in_the_export_and_it_answers(app, site, conn):
    """Decided: the export holds everything (GDPR Art. 15), so no cap; retention bounds what
    is kept (90 days of attempts)."""
    record, me = _anna(app, site, conn)
    conn.execute(
        "insert into login_attempts (user_id, client_ip, user_agent, outcome)"
        " select %s, '198.51.100.9', repeat('a', 200), 'wrong_password'"
        " from generate_series(1, 10000)",
        (record["id"],),
    )
    started = time.monotonic()
    answer = _export(me)
    took = time.monotonic() - started
    document = answer.get_json()
    assert took < 5, took
    assert len(document["login_attempts"]) >= 10000


def test_the_openapi_operation_is_documented(client):
    spec = client.get("/openapi.json").get_json()
    operation = spec["paths"]["/v1/me/export"]["get"]
    assert operation["summary"] and operation["description"]
    assert "401" in operation["responses"]
    ok = operation["responses"]["200"]["content"]["application/json"]
    assert ok.get("example") or ok.get("examples")
    assert operation.get("security")
