"""Newsletters on separate, committing connections: parallel subscriptions of one address,
parallel one-click POSTs of one link, and a double opt-in mail over real SMTP whose link
confirms."""

import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests

from identity.api.guards import SERVICES
from identity.config import load_config
from identity.mail.courier import courier_from_settings
from identity.store import newsletters as newsletters_store
from tests.api.liveserver import serving
from tests.sites import EVERY_LIST, site_key_for

pytestmark = pytest.mark.committing

CONSENT = {"text": "Yes, send me news (form v3)", "client_ip": "203.0.113.7"}


@pytest.fixture
def live(pooled_app, committing_db):
    """(base URL, a session with copernica.com's key, the app)."""
    key = site_key_for(committing_db, "copernica.com", lists=EVERY_LIST)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {key}"
    with serving(pooled_app) as base_url:
        yield base_url, session, pooled_app
    session.close()


def _subscribe(base_url, session, key, email="Anna@Example.com"):
    return session.post(
        f"{base_url}/v1/newsletters/{key}/subscriptions",
        json={"email": email, "consent": CONSENT},
        timeout=30,
    )


def _count(db, sql) -> int:
    return db.execute(sql).fetchone()["n"]


def test_the_same_new_address_subscribing_50_times_at_once_is_one_record_one_flag_one_event(
    live, committing_db
):
    base_url, session, _ = live
    with ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(lambda _: _subscribe(base_url, session, "copernica-updates"), range(50))
        )
    assert sorted(a.status_code for a in answers) == [200] * 50
    assert {a.json()["state"] for a in answers} == {"subscribed"}
    assert len({a.json()["user_id"] for a in answers}) == 1
    assert _count(committing_db, "select count(*) as n from users") == 1
    assert _count(committing_db, "select count(*) as n from subscriptions") == 1
    assert _count(committing_db, "select count(*) as n from consent_events") == 1


def test_50_parallel_double_opt_in_requests_mail_at_most_three_times(live, committing_db):
    base_url, session, _ = live
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: _subscribe(base_url, session, "copernica"), range(50)))
    assert sorted(a.status_code for a in answers) == [200] * 3 + [429] * 47
    assert _count(committing_db, "select count(*) as n from outbox") == 3
    assert _count(committing_db, "select count(*) as n from consent_events") == 1
    state = committing_db.execute("select state from subscriptions").fetchone()["state"]
    assert state == "pending"


def test_50_parallel_one_click_posts_of_one_link_change_the_flag_once(live, committing_db):
    base_url, session, app = live
    user_id = _subscribe(base_url, session, "smtpeter").json()["user_id"]
    committing_db.execute("update subscriptions set state = 'subscribed'")
    token = app.extensions[SERVICES].newsletters.tokens.sign(uuid.UUID(user_id), 4)

    def one_click(_):
        return requests.post(
            f"{base_url}/v1/unsubscribe/{token}",
            data="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            allow_redirects=False,
            timeout=30,
        )

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one_click, range(50)))
    assert [a.status_code for a in answers] == [200] * 50
    assert sum(a.json()["changed"] for a in answers) == 1
    assert (
        _count(
            committing_db, "select count(*) as n from consent_events where action = 'unsubscribe'"
        )
        == 1
    )


def test_a_double_opt_in_mail_arrives_over_smtp_and_its_link_confirms(
    live, committing_db, database_url, mail_server
):
    base_url, session, _ = live
    assert _subscribe(base_url, session, "mailerq").json()["state"] == "pending"
    config = load_config(
        {
            "DATABASE_URL": database_url,
            "SMTP_URL": mail_server.url,
            "PUBLIC_URL": "https://id.example.com",
        }
    )
    courier = courier_from_settings(config)
    try:
        courier.deliver_due(committing_db)
    finally:
        courier.close()
    (message,) = mail_server.sink.wait_for(1)
    assert message["Subject"] == "copernica.com: confirm your subscription to MailerQ newsletter"
    assert message["To"] == "Anna@example.com"
    text = message.get_body(("plain",)).get_content()
    token = re.search(r"https://copernica\.com/newsletters/confirm\?token=([\w-]+)", text)[1]
    confirmed = session.post(
        f"{base_url}/v1/newsletters/confirm", json={"token": token}, timeout=30
    )
    assert confirmed.status_code == 200 and confirmed.json()["state"] == "subscribed"
    rows = committing_db.execute("select action from consent_events order by id").fetchall()
    assert [row["action"] for row in rows] == ["request", "confirm"]


def test_50_parallel_preference_changes_leave_each_list_once_without_deadlock(live, committing_db):
    base_url, session, app = live
    user_id = _subscribe(base_url, session, "copernica-updates").json()["user_id"]
    committing_db.execute("update subscriptions set state = 'subscribed'")
    token = app.extensions[SERVICES].newsletters.tokens.sign(uuid.UUID(user_id), 4)

    def leave_all(_):
        return requests.put(
            f"{base_url}/v1/unsubscribe/{token}/preferences", json={"all": False}, timeout=60
        ).status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(leave_all, range(50)))
    assert statuses == [200] * 50
    events = committing_db.execute(
        "select newsletter, count(*) as n from consent_events where action = 'unsubscribe'"
        " group by newsletter"
    ).fetchall()
    assert len(events) == 5 and {row["n"] for row in events} == {1}


def test_one_click_beside_other_changes_of_the_same_person_never_deadlocks(live, committing_db):
    """A one-click, a preference page and the person's own page change one person's flags
    at once, over and over: every answer is a 200 (a one-click used to lock the flag first
    and the record second, the others the other way round: deadlocks, 503s)."""
    base_url, session, app = live
    user_id = uuid.UUID(_subscribe(base_url, session, "mailerq").json()["user_id"])
    tokens = app.extensions[SERVICES].newsletters.tokens
    one_click_link = f"{base_url}/v1/unsubscribe/{tokens.sign(user_id, 5)}"
    preferences = f"{base_url}/v1/unsubscribe/{tokens.sign(user_id, 1)}/preferences"

    def one_click():
        return requests.post(one_click_link, data={"List-Unsubscribe": "One-Click"}, timeout=60)

    def leave_all():
        return requests.put(preferences, json={"all": False}, timeout=60)

    def subscribe_again():  # a confirmation mail when left: 429 once three went out
        return _subscribe(base_url, session, "copernica-updates")

    statuses = {one_click: [], leave_all: [], subscribe_again: []}
    with ThreadPoolExecutor(6) as pool:
        for _ in range(25):
            committing_db.execute("update subscriptions set state = 'subscribed'")
            futures = {pool.submit(f): f for f in (one_click, leave_all, subscribe_again) * 2}
            for future, f in futures.items():
                statuses[f].append(future.result().status_code)
    assert set(statuses[one_click]) == {200}
    assert set(statuses[leave_all]) == {200}
    assert set(statuses[subscribe_again]) <= {200, 429}


def test_a_one_click_beside_a_confirmation_or_subscription_is_never_overwritten(
    live, committing_db
):
    """From the third hostile round: the one-click took no lock on the person, so a
    confirmation (or a new subscription) running beside it overwrote its unsubscribe."""
    base_url, session, app = live
    tokens = app.extensions[SERVICES].newsletters.tokens
    with ThreadPoolExecutor(2) as pool:
        for round_no in range(15):
            email = f"race{round_no}@example.com"
            user_id = uuid.UUID(_subscribe(base_url, session, "copernica", email).json()["user_id"])
            confirm_token = committing_db.execute(
                "select mail_values->>'token' as t from outbox"
                " where template = 'newsletter_confirm' and recipient = %s",
                (email,),
            ).fetchone()["t"]
            link = f"{base_url}/v1/unsubscribe/{tokens.sign(user_id, 1)}"
            confirmed = pool.submit(
                session.post,
                f"{base_url}/v1/newsletters/confirm",
                json={"token": confirm_token},
                timeout=30,
            )
            clicked = pool.submit(requests.post, link, timeout=30)
            assert clicked.result().status_code == 200
            assert confirmed.result().status_code in (200, 422)
            state = committing_db.execute(
                "select state from subscriptions where user_id = %s and newsletter = 1",
                (user_id,),
            ).fetchone()["state"]
            assert state == "unsubscribed", round_no


def test_many_people_clicking_at_once_each_get_their_own_answer_and_one_event_per_flag(
    live, committing_db
):
    """One-clicks that come together are written together: 30 people on two lists each,
    every link clicked three times at once (180 POSTs), and one link of a person who is
    gone. Each link is changed exactly once (`changed` true in one of its three answers),
    each answer names its own person's list, and every flag has one consent event with
    the clicking client's user agent."""
    base_url, _, app = live
    tokens = app.extensions[SERVICES].newsletters.tokens
    # Addresses whose masks differ: an answer for another person's link would show.
    emails = [f"{'ab'[i // 26]}{i}@{chr(97 + i % 26)}{i}.example" for i in range(1, 32)]
    people = committing_db.execute(
        "insert into users (email, email_key) select e, e from unnest(%s::text[]) e"
        " returning id, email",
        (emails,),
    ).fetchall()
    committing_db.execute(
        "insert into subscriptions (user_id, newsletter, state)"
        " select id, n, 'subscribed' from users, unnest(array[2, 4]) n"
    )
    gone = people.pop()
    links = [(p, n) for p in people for n in (2, 4)]
    committing_db.execute("delete from users where id = %s", (gone["id"],))

    def click(link):
        person, newsletter = link
        token = tokens.sign(uuid.UUID(str(person["id"])), newsletter)
        return requests.post(
            f"{base_url}/v1/unsubscribe/{token}",
            data="List-Unsubscribe=One-Click",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "User-Agent": f"client of {person['email']}",
            },
            timeout=60,
        )

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(click, [*links * 3, (gone, 2)]))
    assert answers[-1].status_code == 404
    answers = answers[:-1]
    assert {a.status_code for a in answers} == {200}
    for i, (person, newsletter) in enumerate(links):
        mine = [answers[i + k * len(links)].json() for k in range(3)]
        assert sum(a["changed"] for a in mine) == 1, mine
        local, _, domain = person["email"].partition("@")
        assert {a["email"] for a in mine} == {f"{local[0]}***@{domain[0]}***.example"}
        assert {a["newsletter"] for a in mine} == {
            "copernica-updates" if newsletter == 2 else "smtpeter"
        }
    events = committing_db.execute(
        "select u.email, e.newsletter, e.user_agent, e.channel from consent_events e"
        " join users u on u.id = e.user_id order by u.email, e.newsletter"
    ).fetchall()
    assert sorted((e["email"], e["newsletter"]) for e in events) == sorted(
        (p["email"], n) for p, n in links
    )
    assert all(e["user_agent"] == f"client of {e['email']}" for e in events)
    assert {e["channel"] for e in events} == {"one-click"}
    flags = committing_db.execute("select distinct state from subscriptions").fetchall()
    assert flags == [{"state": "unsubscribed"}]


def _people_on_list(db, count: int, newsletter: int) -> list[dict]:
    people = db.execute(
        "insert into users (email, email_key) select 'q' || i || '@example.com',"
        " 'q' || i || '@example.com' from generate_series(1, %s) i returning id",
        (count,),
    ).fetchall()
    db.execute(
        "insert into subscriptions (user_id, newsletter, state)"
        " select id, %s, 'subscribed' from users",
        (newsletter,),
    )
    return people


def test_one_person_whose_record_is_held_does_not_hold_up_anyone_elses_one_click(
    live, committing_db, database_url
):
    """From the hostile round on batching: a person whose record another change held
    (an import, a confirmation) kept every one-click batched with theirs, and all queued
    behind it, waiting for the lock (10 to 20 s). Now a batch passes such a person by;
    their click waits alone, and changes the flag once the record is free."""
    base_url, _, app = live
    tokens = app.extensions[SERVICES].newsletters.tokens
    held, *others = _people_on_list(committing_db, 25, 1)

    def click(person):
        token = tokens.sign(uuid.UUID(str(person["id"])), 1)
        return requests.post(f"{base_url}/v1/unsubscribe/{token}", timeout=60)

    with psycopg.connect(database_url) as holder, ThreadPoolExecutor(12) as pool:
        holder.execute("select from users where id = %s for no key update", (held["id"],))
        waiting = pool.submit(click, held)
        time.sleep(0.2)
        started = time.monotonic()
        answers = list(pool.map(click, others))
        others_took = time.monotonic() - started
        assert not waiting.done()
        holder.rollback()
        assert waiting.result().json()["changed"] is True
    assert [a.json()["changed"] for a in answers] == [True] * len(others)
    assert others_took < 5  # the lock waits 10 s before it gives up


def test_a_batch_never_waits_for_a_held_record_so_it_cannot_deadlock(committing_db, database_url):
    """The import locks people in the order of their addresses, a batch of one-clicks in
    the order of their ids: a batch that waited for a record could close a cycle (found
    by the hostile round). It does not wait: the held person is passed by as busy."""
    first, second = _people_on_list(committing_db, 2, 1)
    clicks = [
        {
            "user_id": p["id"],
            "newsletter": 1,
            "site": None,
            "client_ip": "192.0.2.1",
            "user_agent": "mail client",
            "consent_text": None,
            "channel": "one-click",
        }
        for p in (first, second)
    ]
    with psycopg.connect(database_url) as holder:
        holder.execute("select from users where id = %s for no key update", (first["id"],))
        committing_db.execute("set lock_timeout = '2s'")
        found = newsletters_store.unsubscribe(committing_db, clicks, skip_busy=True)
        assert [(f["changed"], f["busy"]) for f in found] == [(False, True), (True, False)]
    found = newsletters_store.unsubscribe(committing_db, clicks[:1])
    assert [(f["changed"], f["busy"]) for f in found] == [(True, False)]
