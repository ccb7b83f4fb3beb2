"""Unsubscribe links through the HTTP API: RFC 8058 one-click (both body types, no
redirect, safe GET, idempotent, one list only), tampered tokens, and the preferences."""

import base64
import uuid

import pytest

from identity.api.guards import SERVICES
from identity.security.unsubscribe_tokens import UnsubscribeTokens
from tests.api.problems import assert_problem
from tests.api.test_newsletters import events, flags, subscribe

ONE_CLICK = "List-Unsubscribe=One-Click"


@pytest.fixture
def anna(site, conn, app):
    """Anna on three lists; (her id, the app's token signer)."""
    for key in ("copernica-updates", "copernica", "smtpeter"):
        subscribe(site, key=key)
    conn.execute("update subscriptions set state = 'subscribed'")
    user_id = uuid.UUID(
        conn.execute("select id from users where email = 'anna@example.com'").fetchone()["id"].hex
    )
    return user_id, app.extensions[SERVICES].newsletters.tokens


def link(anna, list_id=2) -> str:
    user_id, tokens = anna
    return f"/v1/unsubscribe/{tokens.sign(user_id, list_id)}"


def _count_events(conn) -> int:
    return conn.execute("select count(*) as n from consent_events").fetchone()["n"]


def test_get_tells_the_list_and_the_masked_address_and_changes_nothing(client, anna, conn):
    before = _count_events(conn)
    for _ in range(3):
        answer = client.get(link(anna))
        assert answer.status_code == 200
        assert answer.get_json() == {
            "newsletter": "copernica-updates",
            "name": "Copernica software updates",
            "email": "a***@e***.com",
            "state": "subscribed",
        }
    assert client.head(link(anna)).status_code == 200
    assert flags(conn)["copernica-updates"] == "subscribed"
    assert _count_events(conn) == before
    assert "anna@example.com" not in client.get(link(anna)).get_data(as_text=True)


@pytest.mark.parametrize(
    "send",
    [
        lambda c, url: c.post(
            url, data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
        ),
        lambda c, url: c.post(
            url, data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data"
        ),
        lambda c, url: c.post(url),
        lambda c, url: c.post(url, data=b"", content_type="text/plain"),
        lambda c, url: c.post(url, data=b"", content_type="application/json"),
        lambda c, url: c.post(url, json={}),
        lambda c, url: c.post(url, json={"List-Unsubscribe": "One-Click"}),
    ],
    ids=[
        "form-urlencoded",
        "multipart",
        "no-body",
        "empty-body",
        "empty-json-body",
        "json-empty",
        "json",
    ],
)
def test_one_click_unsubscribes_from_that_list_only_without_credentials(client, anna, conn, send):
    answer = send(client, link(anna))
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json()["state"] == "unsubscribed" and answer.get_json()["changed"] is True
    assert "Location" not in answer.headers and "Set-Cookie" not in answer.headers
    assert flags(conn) == {
        "copernica-updates": "unsubscribed",
        "copernica": "subscribed",
        "smtpeter": "subscribed",
    }
    last = events(conn)[-1]
    assert (last["key"], last["action"], last["channel"], last["site"]) == (
        "copernica-updates",
        "unsubscribe",
        "one-click",
        None,
    )
    assert last["client_ip"] == "127.0.0.1"


def test_the_multipart_body_is_really_multipart(client, anna):
    answer = client.post(
        link(anna), data={"List-Unsubscribe": "One-Click"}, content_type="multipart/form-data"
    )
    assert answer.request.mimetype == "multipart/form-data"
    assert answer.status_code == 200


def test_the_link_and_the_preferences_agree_on_a_list_never_subscribed(client, anna, conn):
    """Found by a hostile round: the link said `unsubscribed` where the preferences said
    null for the same list of the same person."""
    never = link(anna, list_id=5)  # mailerq: no flag
    assert client.get(never).get_json()["state"] is None
    flags_shown = client.get(f"{never}/preferences").get_json()["newsletters"]
    assert next(f for f in flags_shown if f["key"] == "mailerq")["state"] is None
    # Leaving it records the refusal: from then on both say so.
    assert client.post(never).get_json()["state"] == "unsubscribed"
    assert client.get(never).get_json()["state"] == "unsubscribed"


def test_one_click_again_is_a_200_that_changes_nothing(client, anna, conn):
    first = client.post(
        link(anna), data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
    )
    count = _count_events(conn)
    for _ in range(3):
        again = client.post(
            link(anna), data=ONE_CLICK, content_type="application/x-www-form-urlencoded"
        )
        assert again.status_code == 200 and again.get_json()["changed"] is False
    assert first.get_json()["changed"] is True
    assert _count_events(conn) == count


def test_one_click_for_a_list_never_subscribed_records_the_refusal(client, anna, conn):
    assert client.post(link(anna, 5)).status_code == 200
    assert flags(conn)["mailerq"] == "unsubscribed"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (
            "List-Unsubscribe=One-Click&List-Unsubscribe=One-Click",
            "application/x-www-form-urlencoded",
        ),
        ("List-Unsubscribe=One-Click&utm_source=mail", "application/x-www-form-urlencoded"),
        (
            '--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n'
            '--b\r\nContent-Disposition: form-data; name="List-Unsubscribe"\r\n\r\nOne-Click\r\n'
            "--b--\r\n",
            "multipart/form-data; boundary=b",
        ),
    ],
)
def test_a_one_click_body_saying_it_twice_or_with_more_unsubscribes(
    client, anna, conn, body, content_type
):
    answer = client.post(link(anna), data=body, content_type=content_type)
    assert answer.status_code == 200 and answer.get_json()["changed"] is True
    assert flags(conn)["copernica-updates"] == "unsubscribed"


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; boundary=b"])
def test_a_multipart_body_that_is_no_form_counts_as_empty_and_unsubscribes(
    client, anna, conn, content_type
):
    """As the operation's description says: no boundary, or parts that do not parse, say
    nothing, and an empty one-click unsubscribes."""
    answer = client.post(link(anna), data=b"--b\r\nnot a part", content_type=content_type)
    assert answer.status_code == 200 and answer.get_json()["changed"] is True
    assert flags(conn)["copernica-updates"] == "unsubscribed"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("List-Unsubscribe=Two-Clicks", "application/x-www-form-urlencoded", 422),
        ("List-Unsubscribe=One-Click&List-Unsubscribe=x", "application/x-www-form-urlencoded", 422),
        ('{"List-Unsubscribe": 1}', "application/json", 422),
        ("[1, 2]", "application/json", 422),
        ("{not json", "application/json", 400),
        ('{"List-Unsubscribe": "No", "List-Unsubscribe": "One-Click"}', "application/json", 400),
        ('{"List-Unsubscribe": "One-Click", "n": NaN}', "application/json", 400),
        ("List-Unsubscribe=One-Click", "text/plain", 415),
        ("<x/>", "application/xml", 415),
    ],
)
def test_a_one_click_body_saying_something_else_is_refused(
    client, anna, conn, body, content_type, status
):
    assert_problem(client.post(link(anna), data=body, content_type=content_type), status)
    assert flags(conn)["copernica-updates"] == "subscribed"


def _variants(token: str):
    """Every character changed, every byte of the decoded token flipped, every cut."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, char in enumerate(token):
        yield token[:i] + alphabet[(alphabet.index(char) + 1) % 64] + token[i + 1 :]
    raw = base64.urlsafe_b64decode(token)
    for i in range(len(raw)):
        for bit in (0x01, 0x80):
            flipped = raw[:i] + bytes([raw[i] ^ bit]) + raw[i + 1 :]
            yield base64.urlsafe_b64encode(flipped).decode()
    for n in range(len(token)):
        yield token[:n]
    yield token + "A"


def test_a_tampered_or_truncated_token_is_refused_and_changes_nothing(client, anna, conn):
    user_id, tokens = anna
    token = tokens.sign(user_id, 2)
    tried = 0
    for variant in _variants(token):
        if not variant or variant == token:
            continue
        tried += 1
        for method in (client.get, client.post):
            answer = method(f"/v1/unsubscribe/{variant}")
            assert answer.status_code == 404, (variant, answer.status_code)
            assert answer.mimetype == "application/problem+json"
        assert (
            client.put(f"/v1/unsubscribe/{variant}/preferences", json={"all": False}).status_code
            == 404
        )
    assert tried > 44 + 33 * 2 + 40
    assert flags(conn) == {
        "copernica-updates": "subscribed",
        "copernica": "subscribed",
        "smtpeter": "subscribed",
    }


def test_a_token_moved_to_another_list_or_person_is_refused(client, anna, conn):
    user_id, tokens = anna
    raw = bytearray(base64.urlsafe_b64decode(tokens.sign(user_id, 2)))
    other_list = bytes(raw[:1]) + bytes([3]) + bytes(raw[2:])
    other_person = bytes(raw[:2]) + uuid.uuid4().bytes + bytes(raw[18:])
    foreign = UnsubscribeTokens("another secret key entirely", 1).sign(user_id, 2)
    for forged in (other_list, other_person):
        assert (
            client.post(f"/v1/unsubscribe/{base64.urlsafe_b64encode(forged).decode()}").status_code
            == 404
        )
    assert client.post(f"/v1/unsubscribe/{foreign}").status_code == 404
    assert flags(conn)["copernica-updates"] == "subscribed"


def test_old_key_ids_keep_working_after_rotation(client, anna, conn, app):
    user_id, tokens = anna
    from identity.config import DEV_SECRET_KEY

    assert tokens.current_kid == 1
    rotated = UnsubscribeTokens(DEV_SECRET_KEY, 2)
    new_token = rotated.sign(user_id, 4)
    assert new_token[:2] != tokens.sign(user_id, 4)[:2]
    # This app (kid 1) does not know kid 2; an app rotated to kid 2 knows both.
    assert client.post(f"/v1/unsubscribe/{new_token}").status_code == 404
    app.extensions[SERVICES].newsletters.tokens = rotated
    assert client.post(f"/v1/unsubscribe/{tokens.sign(user_id, 2)}").status_code == 200
    assert client.post(f"/v1/unsubscribe/{new_token}").status_code == 200
    assert flags(conn)["smtpeter"] == "unsubscribed"


def test_a_token_for_an_erased_person_is_a_404(client, anna, conn):
    _, tokens = anna
    ghost = tokens.sign(uuid.uuid4(), 2)
    assert_problem(client.get(f"/v1/unsubscribe/{ghost}"), 404)
    assert_problem(client.post(f"/v1/unsubscribe/{ghost}"), 404)
    assert_problem(client.get(f"/v1/unsubscribe/{ghost}/preferences"), 404)


# --- preferences ---------------------------------------------------------------------------


def test_preferences_show_every_list_and_all_false_leaves_them_all(client, anna, conn):
    shown = client.get(f"{link(anna)}/preferences")
    assert shown.status_code == 200
    body = shown.get_json()
    assert body["email"] == "a***@e***.com"
    assert {n["key"]: n["subscribed"] for n in body["newsletters"]} == {
        "copernica": True,
        "copernica-updates": True,
        "copernica-partners": False,
        "smtpeter": True,
        "mailerq": False,
    }
    left = client.put(f"{link(anna)}/preferences", json={"all": False})
    assert left.status_code == 200
    assert not any(n["subscribed"] for n in left.get_json()["newsletters"])
    assert set(flags(conn).values()) == {"unsubscribed"}
    channels = {e["channel"] for e in events(conn) if e["action"] == "unsubscribe"}
    assert channels == {"preference-page"}


def test_preferences_leave_some_lists_and_never_subscribe(client, anna, conn):
    answer = client.put(
        f"{link(anna)}/preferences", json={"newsletters": {"smtpeter": False, "copernica": True}}
    )
    assert answer.status_code == 200
    assert flags(conn) == {
        "copernica-updates": "subscribed",
        "copernica": "subscribed",
        "smtpeter": "unsubscribed",
    }
    count = _count_events(conn)
    refused = client.put(
        f"{link(anna)}/preferences", json={"newsletters": {"mailerq": True, "copernica": False}}
    )
    assert_problem(refused, 422, "newsletters.mailerq")
    assert flags(conn)["copernica"] == "subscribed" and _count_events(conn) == count


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"all": True},
        {"all": "no"},
        {"all": False, "newsletters": {}},
        {"newsletters": {}},
        {"newsletters": {"nope": False}},
        {"newsletters": {"copernica": "no"}},
        [],
        "x",
    ],
)
def test_bad_preference_changes_are_refused(client, anna, conn, body):
    assert_problem(client.put(f"{link(anna)}/preferences", json=body), 422)
    assert set(flags(conn).values()) == {"subscribed"}


def test_a_bad_preference_is_named_by_its_path(client, anna, conn):
    change = {"newsletters": {"nope": False, "mailerq": "no"}}
    problem = assert_problem(client.put(f"{link(anna)}/preferences", json=change), 422)
    assert set(problem["errors"]) == {"newsletters", "newsletters.mailerq"}
    assert problem["errors"]["newsletters"][0].startswith('"nope": Must be one of: ')
    # A key a client makes up never reads as a path: it is quoted, whole or cut short.
    for key in ("copernica.consented_at", "", "_schema", "x" * 100_000, "a\ud800"):
        change = {"newsletters": {key: False}}
        problem = assert_problem(client.put(f"{link(anna)}/preferences", json=change), 422)
        assert list(problem["errors"]) == ["newsletters"], key[:80]
        (message,) = problem["errors"]["newsletters"]
        assert len(message) < 300 and message.startswith('"')
    assert set(flags(conn).values()) == {"subscribed"}
    # A subscription asked of a link: refused by the service, named the same way.
    client.put(f"{link(anna)}/preferences", json={"newsletters": {"copernica-updates": False}})
    change = {"newsletters": {"copernica-updates": True, "mailerq": False}}
    problem = assert_problem(client.put(f"{link(anna)}/preferences", json=change), 422)
    assert problem["errors"] == {
        "newsletters.copernica-updates": [
            "subscribing takes a confirmation: POST /v1/newsletters/copernica-updates/subscriptions"
        ]
    }
    assert flags(conn)["copernica-updates"] == "unsubscribed"


def test_a_genuine_link_to_a_list_no_longer_sent_is_a_404_not_a_500(client, anna, conn):
    retired = link(anna, list_id=6)  # signed as the service signs, for a list not in the catalog
    assert_problem(client.get(retired), 404)
    assert_problem(client.get(f"{retired}/preferences"), 404)
    assert_problem(client.put(f"{retired}/preferences", json={"all": False}), 404)
    assert set(flags(conn).values()) == {"subscribed"}
    before = _count_events(conn)
    assert_problem(
        client.post(
            retired,
            data="List-Unsubscribe=One-Click",
            content_type="application/x-www-form-urlencoded",
        ),
        404,
    )
    assert _count_events(conn) == before


def test_preferences_naming_a_list_no_longer_sent_are_a_422_that_changes_nothing(
    client, anna, conn, app
):
    conn.execute("delete from newsletters where key = 'copernica-partners'")
    # read again, as after the migration's restart
    app.extensions[SERVICES].newsletters._catalog = None
    for want in (False, True):
        change = {"newsletters": {"copernica-partners": want, "mailerq": False}}
        answer = client.put(f"{link(anna)}/preferences", json=change)
        assert_problem(answer, 422)
        assert answer.get_json()["errors"] == {
            "newsletters.copernica-partners": ["this list is no longer sent"]
        }
    assert set(flags(conn).values()) == {"subscribed"}


def test_the_user_agent_kept_with_a_one_click_is_text_as_the_browser_sent_it(client, anna, conn):
    """A header arrives as latin-1: its UTF-8 is read as UTF-8, and what checked text may
    not hold (bidi overrides, C1 controls) is left out, not stored in the consent event."""
    raw = "Mozilla/5.0 \u202e\u0080 Günther".encode().decode("latin-1") + "\x80"
    answer = client.post(link(anna), headers={"User-Agent": raw})
    assert answer.status_code == 200
    assert events(conn)[-1]["user_agent"] == "Mozilla/5.0  Günther\ufffd"
    client.post(link(anna, 1), headers={"User-Agent": "Mail\tReader"})
    assert events(conn)[-1]["user_agent"] == "Mail Reader"  # a tab separated two words


def test_what_a_link_shows_is_kept_by_no_cache(client, anna):
    for answer in (
        client.get(link(anna)),
        client.get(f"{link(anna)}/preferences"),
        client.post(link(anna)),
        client.get(link(anna, 9)),
    ):
        assert answer.headers["Cache-Control"] == "no-store"


def test_a_list_retired_from_the_catalog_keeps_its_consent_events(client, anna, conn, app):
    """Retiring a list deletes its catalog row; the proof of consent given for it stays,
    and its links answer 404 (the flags name the list by number, not by foreign key)."""
    before = _count_events(conn)
    conn.execute("delete from newsletters where key = 'copernica-updates'")
    # read again, as after the migration's restart
    app.extensions[SERVICES].newsletters._catalog = None
    assert _count_events(conn) == before
    assert_problem(client.get(link(anna, 2)), 404)
    assert client.post(link(anna, 1)).status_code == 200  # the other lists work on


def test_a_body_of_many_wrong_fields_gets_a_short_answer(client, anna, conn):
    """One link and a megabyte of keys used to cost seconds of CPU and a 20 MB answer."""
    many = {"newsletters": {str(i): False for i in range(60_000)}}  # under the 1 MiB limit
    answer = client.put(f"{link(anna)}/preferences", json=many)
    assert_problem(answer, 422)
    assert answer.get_json()["errors"] == {"newsletters": ["More than 5 entries."]}
    unknown = {f"field{i}": 1 for i in range(5_000)} | {"all": False}
    answer = client.put(f"{link(anna)}/preferences", json=unknown)
    assert_problem(answer, 422)
    assert len(answer.get_json()["errors"]) == 50 and len(answer.get_data()) < 10_000
    assert "more fields than the 50 named" in answer.get_json()["detail"]
    assert set(flags(conn).values()) == {"subscribed"}
