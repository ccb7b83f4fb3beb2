"""Accounts under parallel requests, on committing connections, and one sign-up whose mail
goes through a real SMTP server."""

import base64
import json
import math
import re
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pyotp
import pytest
import requests
from psycopg.rows import dict_row

from identity.api.guards import SERVICES
from identity.config import load_config
from identity.db import PinnedDatabase
from identity.mail.courier import courier_from_settings
from identity.services.accounts import Tokens
from identity.services.accounts.common import account_throttle
from identity.services.principal import Principal, SiteCaller
from identity.store.transactions import UnitOfWork
from tests.api.liveserver import serving
from tests.mailsink import MailServer
from tests.sites import site_key_for

pytestmark = pytest.mark.committing

PASSWORD = "plum tractor quietly 83 violins"
BROWSER = {"client_ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Test)"}


@pytest.fixture
def live(pooled_app, committing_db):
    key = site_key_for(committing_db, "copernica.com")
    with serving(pooled_app) as base_url:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        yield base_url, session


def _token(db, to, template):
    row = db.execute(
        "select mail_values from outbox where recipient = %s and template = %s"
        " order by id desc limit 1",
        (to, template),
    ).fetchone()
    return row["mail_values"]["token"]


def _sign_up(base_url, session, db, email="anna@example.com"):
    session.post(
        f"{base_url}/v1/auth/register", json={"email": email, "password": PASSWORD, **BROWSER}
    )
    token = _token(db, email, "verify_email")
    assert session.post(f"{base_url}/v1/auth/verify-email", json={"token": token}).ok


def _with_second_factor(base_url, session, db, email) -> pyotp.TOTP:
    """An account at `email` whose second factor is on: its authenticator app."""
    _sign_up(base_url, session, db, email)
    login = session.post(
        f"{base_url}/v1/auth/login", json={"email": email, "password": PASSWORD, **BROWSER}
    )
    me = {"Authorization": f"Bearer {login.json()['access_token']}"}
    body = {"current_password": PASSWORD, **BROWSER}
    setup = requests.post(f"{base_url}/v1/me/second-factor/totp", json=body, headers=me, timeout=30)
    app = pyotp.TOTP(setup.json()["secret"])
    confirm = {"code": app.now()}
    confirmed = requests.post(
        f"{base_url}/v1/me/second-factor/totp/confirm", json=confirm, headers=me, timeout=30
    )
    assert confirmed.ok, confirmed.text
    return app


def test_50_parallel_wrong_passwords_count_as_50(live, committing_db):
    base_url, session = live
    _sign_up(base_url, session, committing_db)

    def wrong(n):
        return session.post(
            f"{base_url}/v1/auth/login",
            json={
                "email": "anna@example.com",
                "password": f"wrong {n}",
                "client_ip": f"192.0.2.{n}",
            },
            timeout=60,
        ).status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(wrong, range(50)))
    assert set(statuses) <= {401, 429}
    failures = committing_db.execute(
        "select failures from login_throttles where key like 'account:%'"
    ).fetchone()["failures"]
    attempts = committing_db.execute(
        "select count(*) as n from login_attempts where outcome = 'wrong_password'"
    ).fetchone()["n"]
    assert failures == attempts == statuses.count(401)
    assert statuses.count(401) + statuses.count(429) == 50
    assert statuses.count(429) > 0  # the throttle caught some of them while they ran


def test_two_parallel_refreshes_with_one_token_never_make_two_live_pairs(live, committing_db):
    base_url, session = live
    _sign_up(base_url, session, committing_db)
    answer = session.post(
        f"{base_url}/v1/auth/login",
        json={"email": "anna@example.com", "password": PASSWORD, **BROWSER},
    )
    assert answer.ok, answer.text
    tokens = answer.json()

    def refresh(_):
        return session.post(
            f"{base_url}/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(refresh, range(2)))
    assert sorted(a.status_code for a in answers) == [200, 401]
    winner = next(a for a in answers if a.ok).json()
    # The loser showed a spent token: the family is ended, the winner's pair with it.
    again = session.post(
        f"{base_url}/v1/auth/refresh", json={"refresh_token": winner["refresh_token"]}
    )
    assert again.status_code == 401
    live_refresh = committing_db.execute(
        "select count(*) as n from refresh_tokens r join sessions s on s.id = r.session_id"
        " where r.spent_at is null and s.revoked_at is null"
    ).fetchone()["n"]
    assert live_refresh == 0


@pytest.mark.timing
def test_a_login_takes_the_same_time_whatever_is_wrong(live, committing_db):
    base_url, session = live
    _sign_up(base_url, session, committing_db, "known@example.com")
    _with_second_factor(base_url, session, committing_db, "second@example.com")
    session.post(
        f"{base_url}/v1/auth/register",
        json={"email": "unproven@example.com", "password": PASSWORD, **BROWSER},
    )
    cases = {
        "wrong password": ("known@example.com", "not the password"),
        "wrong password, second factor on": ("second@example.com", "not the password"),
        "unknown address": ("nobody@example.com", PASSWORD),
        "unproven address": ("unproven@example.com", PASSWORD),
    }
    seconds = {name: [] for name in cases}
    for n in range(12):  # interleaved, each from its own client IP so no throttle applies
        for name, (email, password) in cases.items():
            started = time.perf_counter()
            answer = session.post(
                f"{base_url}/v1/auth/login",
                json={"email": email, "password": password, "client_ip": f"198.51.100.{n}"},
            )
            seconds[name].append(time.perf_counter() - started)
            assert answer.status_code in (401, 429)
            committing_db.execute("delete from login_throttles")
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    fastest, slowest = min(medians.values()), max(medians.values())
    assert slowest / fastest < 1.3, medians  # an argon2 check in every case


@pytest.mark.timing
def test_a_registration_takes_the_same_time_whatever_the_address(live, committing_db):
    """A new address, a minimal profile's, an unproven account's (registrations pending)
    and a proven account's: the same argon2 work each (a hash and the same number of
    checks), so the time tells none of them apart."""
    base_url, session = live
    _sign_up(base_url, session, committing_db, "known@example.com")
    for _ in range(2):
        session.post(
            f"{base_url}/v1/auth/register",
            json={"email": "unproven@example.com", "password": f"{PASSWORD} {_}", **BROWSER},
        )
    seconds = {"new": [], "minimal profile": [], "unproven account": [], "proven account": []}
    for n in range(11):  # interleaved, each sample from its own client IP
        made = session.post(
            f"{base_url}/v1/profiles", json={"email": f"minimal{n}@example.com", "source": "event"}
        )
        assert made.status_code == 201
        addresses = {
            "new": f"new{n}@example.com",
            "minimal profile": f"minimal{n}@example.com",
            "unproven account": "unproven@example.com",
            "proven account": "known@example.com",
        }
        for kind, email in addresses.items():
            started = time.perf_counter()
            answer = session.post(
                f"{base_url}/v1/auth/register",
                json={"email": email, "password": PASSWORD, "client_ip": f"198.51.100.{n}"},
            )
            seconds[kind].append(time.perf_counter() - started)
            assert answer.status_code == 202, answer.text
    medians = {kind: statistics.median(times) for kind, times in seconds.items()}
    fastest, slowest = min(medians.values()), max(medians.values())
    assert slowest / fastest < 1.2, medians


@pytest.mark.timing
def test_a_right_password_takes_as_long_with_a_second_factor_as_without(live, committing_db):
    """The second step begun (a challenge written) costs what a sign-in does (a session
    written): the answer's time tells no more than its body."""
    base_url, session = live
    _sign_up(base_url, session, committing_db, "plain@example.com")
    _with_second_factor(base_url, session, committing_db, "second@example.com")
    seconds = {"plain@example.com": [], "second@example.com": []}
    for n in range(12):
        for email, times in seconds.items():
            started = time.perf_counter()
            answer = session.post(
                f"{base_url}/v1/auth/login",
                json={"email": email, "password": PASSWORD, "client_ip": f"198.51.100.{n}"},
            )
            times.append(time.perf_counter() - started)
            assert answer.status_code == 200
    medians = [statistics.median(times) for times in seconds.values()]
    assert max(medians) / min(medians) < 1.3, medians


def test_of_two_second_steps_with_one_mfa_token_or_one_code_exactly_one_signs_in(
    live, committing_db
):
    base_url, session = live
    app = _with_second_factor(base_url, session, committing_db, "anna@example.com")
    committing_db.execute("update second_factors set last_step = null")
    body = {"email": "anna@example.com", "password": PASSWORD, **BROWSER}

    def second_step(mfa_token):
        return session.post(
            f"{base_url}/v1/auth/login/second-factor",
            json={"mfa_token": mfa_token, "code": app.now(), **BROWSER},
        ).status_code

    one_token = session.post(f"{base_url}/v1/auth/login", json=body).json()["mfa_token"]
    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(second_step, [one_token] * 2)) == [200, 401]
    committing_db.execute("update second_factors set last_step = null")
    tokens = [session.post(f"{base_url}/v1/auth/login", json=body).json() for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:  # one code, two logins: it is taken once
        assert sorted(pool.map(second_step, [t["mfa_token"] for t in tokens])) == [200, 401]


def test_a_sign_up_mail_arrives_over_smtp_and_its_link_proves_the_address(
    live, committing_db, database_url
):
    base_url, session = live
    server = MailServer()
    server.start()
    try:
        assert (
            session.post(
                f"{base_url}/v1/auth/register",
                json={
                    "email": "anna@example.com",
                    "password": PASSWORD,
                    "language": "nl",
                    **BROWSER,
                },
            ).status_code
            == 202
        )
        config = load_config(
            {
                "DATABASE_URL": database_url,
                "SMTP_URL": server.url,
                "PUBLIC_URL": "https://id.example.com",
            }
        )
        courier = courier_from_settings(config)
        try:
            courier.deliver_due(committing_db)
        finally:
            courier.close()
        (message,) = server.sink.wait_for(1)
    finally:
        server.stop()
    # As the site whose key registered her: its name for a brand, IDENTITY_MAIL_FROM's
    # address for a sender (it has set neither), its pages for the link.
    assert message["Subject"] == "Bevestig je e-mailadres voor copernica.com"
    assert message["From"].addresses[0].display_name == "copernica.com"
    text = message.get_body(("plain",)).get_content()
    token = re.search(r"https://copernica\.com/verify-email\?token=([\w-]+)", text).group(1)
    proven = session.post(f"{base_url}/v1/auth/verify-email", json={"token": token})
    assert proven.status_code == 200 and proven.json()["status"] == "registered"
    login = session.post(
        f"{base_url}/v1/auth/login",
        json={"email": "anna@example.com", "password": PASSWORD, **BROWSER},
    )
    assert login.status_code == 200


@pytest.fixture
def two_servers(database_url, committing_db):
    """Two gunicorn servers, as two replicas would run, on one database."""
    import subprocess

    from tests.served import gunicorn_command, gunicorn_env
    from tests.test_cli import free_port, stop, wait_ready

    env = gunicorn_env(database_url)
    servers, bases = [], []
    try:
        for _ in range(2):
            port = free_port()
            command = gunicorn_command(port)
            servers.append(subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL))
            bases.append(f"http://127.0.0.1:{port}")
        for base, server in zip(bases, servers, strict=True):
            wait_ready(base, server)
        with requests.Session() as session:
            session.headers["Authorization"] = f"Bearer {site_key_for(committing_db, 'x.com')}"
            yield bases, session
    finally:
        # The session's kept-alive connections are closed by now: a server stopping with
        # one open waits for it until its header timeout (10 s).
        for server in servers:
            stop(server)


@pytest.mark.slow
def test_50_parallel_wrong_passwords_over_two_server_processes_count_as_50(
    two_servers, committing_db
):
    bases, session = two_servers
    _sign_up(bases[0], session, committing_db)

    def wrong(n):
        return session.post(
            f"{bases[n % 2]}/v1/auth/login",
            json={"email": "anna@example.com", "password": f"wrong {n}", "client_ip": "192.0.2.7"},
            timeout=60,
        ).status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(wrong, range(50)))
    assert set(statuses) <= {401, 429} and statuses.count(429) > 0
    throttles = {
        row["key"].split(":")[0]: row["failures"]
        for row in committing_db.execute("select key, failures from login_throttles")
    }
    attempts = committing_db.execute(
        "select count(*) as n from login_attempts where outcome = 'wrong_password'"
    ).fetchone()["n"]
    # Every password check counted once, whichever server made it; the IP also counts
    # the attempts the account's limit then refused.
    assert throttles["account"] == attempts == statuses.count(401)
    assert throttles["ip"] >= throttles["account"]


def test_parallel_attempts_cannot_slip_past_the_count_before_it_is_made(live, committing_db):
    base_url, session = live
    _sign_up(base_url, session, committing_db)

    def attempt(n):
        password = PASSWORD if n == 49 else f"wrong guess number {n} zebra"
        return session.post(
            f"{base_url}/v1/auth/login",
            json={"email": "anna@example.com", "password": password, "client_ip": f"203.0.113.{n}"},
            timeout=60,
        ).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(25) as pool:
        statuses = list(pool.map(attempt, range(50)))
    elapsed = time.monotonic() - started
    checked = committing_db.execute(
        "select count(*) as n from login_attempts where outcome <> 'throttled'"
    ).fetchone()["n"]
    # Five free checks and the one that starts the waits; a burst that lasts longer than
    # the first wait (1 s, then 2, 4, ...: a loaded machine) buys one more check a wait.
    more = math.floor(math.log2(elapsed + 1)) if elapsed > 1 else 0
    assert checked <= 6 + more, (checked, elapsed)
    assert statuses.count(429) >= 44 - more


def test_clicking_many_links_of_one_address_at_once_cannot_deadlock(live, committing_db):
    base_url, session = live
    for n in range(5):  # from five networks: each gets its mail (three an hour per network)
        session.post(
            f"{base_url}/v1/auth/register",
            json={
                "email": "anna@example.com",
                "password": f"{PASSWORD} {n}",
                "client_ip": f"192.0.2.{n + 1}",
            },
        )
    tokens = [
        row["mail_values"]["token"]
        for row in committing_db.execute(
            "select mail_values from outbox where template = 'verify_email'"
        )
    ]

    def click(token):
        return session.post(f"{base_url}/v1/auth/verify-email", json={"token": token}).status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(click, tokens * 2))
    assert statuses.count(200) == 1 and statuses.count(422) == 9


def _claims(access_token: str) -> dict:
    payload = access_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_many_sign_ins_refreshing_at_once_each_get_their_own_next_pair(live, committing_db):
    """Refreshes that come together are rotated together: 3 people with 6 sign-ins each
    refresh 5 times over, all at once, while a spent token of one sign-in is shown again.
    Every answer belongs to its own sign-in (its person, its session), each new token
    works once, and only the sign-in whose token was copied is ended."""
    base_url, session = live
    emails = [f"p{i}@example.com" for i in range(3)]
    for email in emails:
        _sign_up(base_url, session, committing_db, email)

    def login(email):
        answer = session.post(
            f"{base_url}/v1/auth/login",
            json={"email": email, "password": PASSWORD, **BROWSER},
            timeout=60,
        )
        assert answer.ok, answer.text
        claims = _claims(answer.json()["access_token"])
        return {
            "email": email,
            "sub": claims["sub"],
            "sid": claims["sid"],
            "refresh_token": answer.json()["refresh_token"],
        }

    with ThreadPoolExecutor(6) as pool:
        chains = list(pool.map(login, [e for e in emails for _ in range(6)]))
    copied = chains.pop()
    spent = copied["refresh_token"]
    first = session.post(f"{base_url}/v1/auth/refresh", json={"refresh_token": spent})
    assert first.ok

    def walk(chain):
        for _ in range(5):
            answer = session.post(
                f"{base_url}/v1/auth/refresh",
                json={"refresh_token": chain["refresh_token"]},
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            claims = _claims(answer.json()["access_token"])
            assert (claims["sub"], claims["sid"]) == (chain["sub"], chain["sid"])
            chain["refresh_token"] = answer.json()["refresh_token"]
        return chain

    def replay():
        return session.post(
            f"{base_url}/v1/auth/refresh", json={"refresh_token": spent}, timeout=60
        ).status_code

    with ThreadPoolExecutor(18) as pool:
        replayed = pool.submit(replay)
        walked = list(pool.map(walk, chains))
    assert replayed.result() == 401
    live_sessions = committing_db.execute(
        "select s.id::text as sid, count(r.*) filter (where r.spent_at is null) as live"
        " from sessions s join refresh_tokens r on r.session_id = s.id"
        " where s.revoked_at is null group by s.id"
    ).fetchall()
    assert sorted(row["sid"] for row in live_sessions) == sorted(c["sid"] for c in walked)
    assert {row["live"] for row in live_sessions} == {1}
    ended = session.post(
        f"{base_url}/v1/auth/refresh", json={"refresh_token": first.json()["refresh_token"]}
    )
    assert ended.status_code == 401


class _AnswerLost:
    """A connection whose batch of rotations commits and whose answer is then lost on the
    way back (a failover, a dropped network link): the statement ran, the caller sees an
    OperationalError. The first statement it runs is slow, so the others queue."""

    def __init__(self, url: str, state: dict):
        self._conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        self._state = state

    def execute(self, query, params=None, **kwargs):
        if not self._state.get("slowed"):
            self._state["slowed"] = True
            time.sleep(0.5)
        cursor = self._conn.execute(query, params, **kwargs)
        if isinstance(params, dict) and len(params.get("old", ())) > 1:
            raise psycopg.OperationalError("the answer was lost after the commit")
        return cursor

    def close(self):
        self._conn.close()


def test_a_batch_whose_answer_is_lost_after_its_commit_ends_no_sign_in(
    live, committing_db, database_url, pooled_app
):
    """From the hostile round on batched refreshes: a failed batch is run again item by
    item; when it had committed (its answer lost on the way back) every item found its
    token spent and ended its sign-in as copied. Now a rotation run again finds its own
    next token in place and answers as the first run would have."""
    base_url, session = live
    chains = []
    for i in range(5):
        _sign_up(base_url, session, committing_db, f"lost{i}@example.com")
        answer = session.post(
            f"{base_url}/v1/auth/login",
            json={"email": f"lost{i}@example.com", "password": PASSWORD, **BROWSER},
        )
        chains.append(answer.json())
    site = committing_db.execute("select id, name from sites").fetchone()
    caller = Principal(site=SiteCaller(site["id"], site["name"], uuid.uuid4(), frozenset({"auth"})))
    state: dict = {}

    def refresh(chain):
        conn = _AnswerLost(database_url, state)
        try:
            with pooled_app.app_context():
                sessions = pooled_app.extensions[SERVICES].accounts.sessions
                uow = UnitOfWork(PinnedDatabase(conn))
                return sessions.refresh(uow, caller, chain["refresh_token"])
        finally:
            conn.close()

    with ThreadPoolExecutor(5) as pool:
        first = pool.submit(refresh, chains[0])
        time.sleep(0.2)
        outcomes = [first.result(), *pool.map(refresh, chains[1:])]
    assert all(isinstance(outcome, Tokens) for outcome in outcomes), outcomes
    for chain, outcome in zip(chains, outcomes, strict=True):
        assert _claims(outcome.access_token)["sid"] == _claims(chain["access_token"])["sid"]
        again = session.post(
            f"{base_url}/v1/auth/refresh", json={"refresh_token": outcome.refresh_token}
        )
        assert again.status_code == 200, again.text
    revoked = committing_db.execute(
        "select count(*) as n from sessions where revoked_at is not null"
    ).fetchone()["n"]
    assert revoked == 0


def test_an_attempt_an_address_wait_refuses_leaves_the_ip_as_it_was(
    live, committing_db, pooled_app
):
    """From the hostile round: an office IP past its free failures, its last wait over;
    someone there tries an address that must wait (429). That attempt is not counted
    against the IP, so it must not start a wait for the office either: a colleague's
    right password from there right after signs in, and so does the next one."""
    base_url, session = live
    for email in ("blocked@example.com", "colleague@example.com"):
        _sign_up(base_url, session, committing_db, email)
    office_ip = "198.51.100.7"
    committing_db.execute(
        "insert into login_throttles (key, failures, last_failure_at, blocked_until)"
        " values (%s, 21, now(), now() - interval '1 second')",
        (f"ip:{office_ip}",),
    )
    settings = pooled_app.extensions[SERVICES].accounts.login.settings
    account_key = account_throttle(settings, "blocked@example.com")
    committing_db.execute(
        "insert into login_throttles (key, failures, last_failure_at, blocked_until)"
        " values (%s, 9, now(), now() + interval '10 minutes')",
        (account_key,),
    )

    def office():
        return committing_db.execute(
            "select failures, coalesce(blocked_until > now(), false) as waits"
            " from login_throttles where key = %s",
            (f"ip:{office_ip}",),
        ).fetchone()

    def login(email, password):
        body = {"email": email, "password": password, "client_ip": office_ip}
        return session.post(f"{base_url}/v1/auth/login", json=body)

    refused = login("blocked@example.com", "a guess at it")
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) > 500
    assert office() == {"failures": 21, "waits": False}
    assert login("colleague@example.com", PASSWORD).status_code == 200
    # A right password's check is taken back too, with the wait its count began.
    assert office() == {"failures": 21, "waits": False}
    assert login("colleague@example.com", PASSWORD).status_code == 200


def test_a_spent_token_of_a_sign_in_past_its_lifetime_is_not_valid_not_copied(live, committing_db):
    """From the hostile round: a sign-in past its absolute lifetime answered a spent token
    with "used before; the sign-in is ended", as if it had been copied."""
    base_url, session = live
    _sign_up(base_url, session, committing_db)
    credentials = {"email": "anna@example.com", "password": PASSWORD, **BROWSER}
    first = session.post(f"{base_url}/v1/auth/login", json=credentials).json()
    second = session.post(
        f"{base_url}/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    ).json()
    committing_db.execute("update sessions set expires_at = now() - interval '1 second'")
    for token in (first["refresh_token"], second["refresh_token"]):
        answer = session.post(f"{base_url}/v1/auth/refresh", json={"refresh_token": token})
        assert answer.status_code == 401
        assert answer.json()["detail"] == "this refresh token is not valid, or its sign-in ended"
    spent = committing_db.execute(
        "select count(*) as n from refresh_tokens where spent_at is not null"
    ).fetchone()["n"]
    assert spent == 1  # the expired sign-in's live token was not spent by trying it
