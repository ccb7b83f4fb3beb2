"""The newsletters' SQL called directly: every change of a flag with its consent event,
one-clicks in a batch (a busy person skipped), imported consents, the double opt-in's
confirmations, and the export's pages and batches."""

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from identity.security.secret_tokens import secret_hash
from identity.store import newsletters as store
from tests.store.records import record

COPERNICA, UPDATES, SMTPETER = 1, 2, 4
LATER = datetime.now(UTC) + timedelta(hours=1)
EARLIER = datetime.now(UTC) - timedelta(hours=1)


def _event(action: str, **given) -> dict:
    return {
        "action": action,
        "site": "copernica.com",
        "client_ip": "203.0.113.7",
        "user_agent": "pytest",
        "consent_text": "Yes, send me news",
        "channel": "form",
    } | given


def _click(user_id, newsletter=UPDATES, **given) -> dict:
    return {"user_id": user_id, "newsletter": newsletter} | _event("unsubscribe", **given)


def _states(conn, user_id) -> dict[int, str]:
    return {n: flag["state"] for n, flag in store.flags(conn, user_id).items()}


def _actions(conn, user_id) -> list[tuple[str, str, str]]:
    events = store.consent_events(conn, user_id)
    return [(e["newsletter"], e["action"], e["state"]) for e in events]


def test_the_catalog_is_the_five_lists_in_number_order(conn):
    lists = store.catalog(conn)
    assert [n["id"] for n in lists] == [1, 2, 3, 4, 5]
    assert lists[0]["key"] == "copernica" and lists[0]["double_opt_in"]
    assert not lists[1]["double_opt_in"]


def test_every_change_of_a_flag_writes_its_consent_event(conn):
    user_id, other = record(conn), record(conn, "bob@example.com")
    assert store.flags(conn, user_id) == {}
    pending = store.set_flag(conn, user_id, COPERNICA, "pending", _event("request"))
    assert pending["state"] == "pending" and pending["newsletter"] == COPERNICA
    store.set_flag(conn, user_id, COPERNICA, "subscribed", _event("confirm", channel="api"))
    store.set_flag(conn, user_id, SMTPETER, "unsubscribed", _event("unsubscribe"))
    assert _states(conn, user_id) == {COPERNICA: "subscribed", SMTPETER: "unsubscribed"}
    assert _actions(conn, user_id) == [
        ("copernica", "request", "pending"),
        ("copernica", "confirm", "subscribed"),
        ("smtpeter", "unsubscribe", "unsubscribed"),
    ]
    event = store.consent_events(conn, user_id)[1]
    assert (event["site"], event["client_ip"], event["user_agent"]) == (
        "copernica.com",
        "203.0.113.7",
        "pytest",
    )
    assert (event["consent_text"], event["channel"]) == ("Yes, send me news", "api")
    assert store.flags(conn, other) == {} and store.consent_events(conn, other) == []


def test_an_event_keeps_the_time_the_person_acted(conn):
    user_id = record(conn)
    at = datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    store.set_flag(conn, user_id, UPDATES, "subscribed", _event("subscribe", at=at))
    assert store.consent_events(conn, user_id)[0]["at"] == at


def test_one_clicks_in_a_batch_each_leave_once(conn):
    subscribed, left, never = (record(conn, f"{n}@example.com") for n in ("a", "b", "c"))
    store.set_flag(conn, subscribed, UPDATES, "subscribed", _event("subscribe"))
    store.set_flag(conn, left, UPDATES, "unsubscribed", _event("unsubscribe"))
    gone = uuid.uuid4()
    clicks = [_click(subscribed), _click(left), _click(gone), _click(never, channel="one-click")]
    answers = store.unsubscribe(conn, clicks)
    assert [(a["email"], a["changed"], a["busy"]) for a in answers] == [
        ("a@example.com", True, False),
        ("b@example.com", False, False),  # already left: nothing written
        (None, False, False),
        ("c@example.com", True, False),  # never on it: the refusal is recorded
    ]
    assert _actions(conn, left) == [("copernica-updates", "unsubscribe", "unsubscribed")]
    assert _actions(conn, subscribed)[-1] == ("copernica-updates", "unsubscribe", "unsubscribed")
    assert store.consent_events(conn, never)[0]["channel"] == "one-click"
    assert _states(conn, never) == {UPDATES: "unsubscribed"}
    again = store.unsubscribe(conn, [_click(subscribed)])
    assert [a["changed"] for a in again] == [False]
    assert len(store.consent_events(conn, subscribed)) == 2


@pytest.mark.committing
def test_a_busy_person_is_skipped_and_the_others_leave(committing_db, database_url):
    busy, free = record(committing_db), record(committing_db, "bob@example.com")
    for user_id in (busy, free):
        store.set_flag(committing_db, user_id, UPDATES, "subscribed", _event("subscribe"))
    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as holder,
        holder.transaction(),
    ):
        store.flags(holder, busy, lock=True)  # another change of this person under way
        committing_db.execute("set lock_timeout = '5s'")  # never waits: a wait is a failure
        answers = store.unsubscribe(committing_db, [_click(busy), _click(free)], skip_busy=True)
        assert [(a["changed"], a["busy"]) for a in answers] == [(False, True), (True, False)]
    committing_db.execute("reset lock_timeout")
    assert _states(committing_db, busy) == {UPDATES: "subscribed"}
    assert len(store.consent_events(committing_db, busy)) == 1
    (alone,) = store.unsubscribe(committing_db, [_click(busy)])  # once it is free
    assert alone["changed"] and _states(committing_db, busy) == {UPDATES: "unsubscribed"}


def test_the_flag_of_one_list_and_the_address(conn):
    user_id = record(conn)
    assert store.flag_of(conn, user_id, UPDATES) == {
        "email": "anna@example.com",
        "state": None,
        "changed_at": None,
    }
    store.set_flag(conn, user_id, UPDATES, "subscribed", _event("subscribe"))
    assert store.flag_of(conn, user_id, UPDATES)["state"] == "subscribed"
    assert store.flag_of(conn, user_id, COPERNICA)["state"] is None
    assert store.flag_of(conn, uuid.uuid4(), UPDATES) is None


def test_imported_consents_never_change_a_flag_already_there(conn):
    fresh, left, pending = (record(conn, f"{n}@example.com") for n in ("a", "b", "c"))
    store.set_flag(conn, left, UPDATES, "unsubscribed", _event("unsubscribe"))
    store.set_flag(conn, pending, UPDATES, "pending", _event("request"))
    at = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    consents = [
        (fresh, UPDATES, at, "old form"),
        (left, UPDATES, at, "old form"),
        (pending, UPDATES, at, "old form"),
        (fresh, SMTPETER, at, "other form"),
    ]
    assert sorted(store.import_consents(conn, "copernica.com", consents)) == [1, 2]
    assert _states(conn, fresh) == {UPDATES: "subscribed", SMTPETER: "subscribed"}
    assert _states(conn, left) == {UPDATES: "unsubscribed"}
    assert _states(conn, pending) == {UPDATES: "pending"}
    imported = store.consent_events(conn, fresh)
    assert [(e["action"], e["channel"], e["at"], e["site"]) for e in imported] == [
        ("subscribe", "import", at, "copernica.com"),
    ] * 2
    assert [e["consent_text"] for e in imported] == ["old form", "other form"]
    assert store.import_consents(conn, "copernica.com", []) == []


def test_a_confirmation_is_taken_once_before_it_expires(conn):
    user_id = record(conn)
    consent = {"text": "Yes please", "channel": "form"}
    store.insert_confirmation(conn, secret_hash("live"), user_id, COPERNICA, consent, LATER)
    store.insert_confirmation(conn, secret_hash("old"), user_id, COPERNICA, consent, EARLIER)
    taken = store.take_confirmation(conn, secret_hash("live"))
    assert (taken["user_id"], taken["newsletter"], taken["consent"]) == (
        user_id,
        COPERNICA,
        consent,
    )
    assert taken["created_at"] is not None
    assert store.take_confirmation(conn, secret_hash("live")) is None
    assert store.take_confirmation(conn, secret_hash("old")) is None
    assert store.take_confirmation(conn, secret_hash("never made")) is None


def test_confirmations_are_counted_per_person_list_and_window(conn):
    user_id, other = record(conn), record(conn, "bob@example.com")
    for n, (who, newsletter) in enumerate(
        [(user_id, COPERNICA), (user_id, COPERNICA), (user_id, SMTPETER), (other, COPERNICA)]
    ):
        store.insert_confirmation(conn, secret_hash(str(n)), who, newsletter, {}, LATER)
    conn.execute(
        "update newsletter_confirmations set created_at = now() - interval '2 hours'"
        " where token_hash = %s",
        (secret_hash("0"),),
    )
    assert store.confirmations_since(conn, user_id, COPERNICA, 3600) == 1
    assert store.confirmations_since(conn, user_id, COPERNICA, 3 * 3600) == 2
    assert store.confirmations_since(conn, user_id, SMTPETER, 3600) == 1


def test_left_since_is_an_unsubscribe_recorded_after_the_time_given(conn):
    user_id = record(conn)
    now = conn.execute("select now() as now").fetchone()["now"]
    store.set_flag(conn, user_id, SMTPETER, "subscribed", _event("subscribe"))
    assert not store.left_since(conn, user_id, SMTPETER, now - timedelta(minutes=1))
    store.set_flag(conn, user_id, SMTPETER, "unsubscribed", _event("unsubscribe"))
    assert store.left_since(conn, user_id, SMTPETER, now - timedelta(minutes=1))
    assert not store.left_since(conn, user_id, SMTPETER, now)  # recorded at, not after
    assert not store.left_since(conn, user_id, COPERNICA, now - timedelta(minutes=1))


def test_records_in_bulk_by_address_key_and_by_id(conn):
    anna, bob = record(conn), record(conn, "bob@example.com")
    by_key = store.users_by_email_key(conn, ["anna@example.com", "nobody@example.com"])
    assert list(by_key) == ["anna@example.com"] and by_key["anna@example.com"]["id"] == anna
    by_id = store.users_by_id(conn, [bob, uuid.uuid4()])
    assert list(by_id) == [bob] and by_id[bob]["email"] == "bob@example.com"


def _subscribers(conn, how_many: int, newsletter=UPDATES) -> list[uuid.UUID]:
    ids = [record(conn, f"{newsletter}.{n}@example.com") for n in range(how_many)]
    for user_id in ids:
        store.set_flag(conn, user_id, newsletter, "subscribed", _event("subscribe"))
    return sorted(ids)


def test_a_page_ends_at_its_last_subscriber_and_says_whether_more_follow(conn):
    ids = _subscribers(conn, 5)
    left = record(conn, "left@example.com")
    store.set_flag(conn, left, UPDATES, "unsubscribed", _event("unsubscribe"))
    _subscribers(conn, 1, newsletter=SMTPETER)
    never = uuid.UUID(int=0)
    assert store.subscriber_page_end(conn, UPDATES, never, 2) == (ids[1], True)
    assert store.subscriber_page_end(conn, UPDATES, ids[1], 2) == (ids[3], True)
    assert store.subscriber_page_end(conn, UPDATES, ids[3], 2) == (None, False)  # one left
    assert store.subscriber_page_end(conn, UPDATES, ids[2], 2) == (ids[4], False)
    assert store.subscriber_page_end(conn, COPERNICA, never, 2) == (None, False)


def test_a_batch_of_subscribers_is_their_ids_and_addresses_end_to_end(conn):
    ids = _subscribers(conn, 5)
    emails = {row["id"]: row["email"] for row in conn.execute("select id, email from users")}
    params = {"newsletter": UPDATES, "after": ids[0], "through": ids[3], "limit": 10}
    with conn.pipeline():
        asked = store.ask_for_subscriber_batch(conn, params)
        user_ids, addresses = store.subscriber_batch(asked)
    assert user_ids == "".join(str(i) for i in ids[1:4]).encode()
    assert addresses.split(b"\x01") == [emails[i].encode() for i in ids[1:4]]
    with conn.pipeline():
        asked = store.ask_for_subscriber_batch(conn, params | {"limit": 2})
        user_ids, _ = store.subscriber_batch(asked)
    assert user_ids == f"{ids[1]}{ids[2]}".encode()
    with conn.pipeline():
        asked = store.ask_for_subscriber_batch(conn, params | {"after": ids[3]})
        assert store.subscriber_batch(asked) == (b"", b"")
