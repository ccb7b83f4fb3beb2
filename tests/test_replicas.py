"""Two replicas of `identity serve` behind HAProxy (the shipped deploy/haproxy.cfg) on one
PostgreSQL: what a person and a site see is what one replica gives them while the
requests alternate between the two; a replica killed under load loses only what it had
in hand; a rolling restart with SIGTERM loses nothing. Slow (a minute and more): run by
`make test-deep`, not `make test`."""

import base64
import json
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request

import psycopg
import pytest
from psycopg.rows import dict_row

from identity.embedded import ensure_database
from tests.mailsink import MailServer
from tests.replicas import Load, Proxy, Replica, wait_until
from tests.served import gunicorn_env
from tests.settings import CHEAP
from tests.sites import EVERY_LIST, site_key_for
from tests.test_cli import IDENTITY, free_port

pytestmark = [
    pytest.mark.replicas,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed"),
]

PASSWORD = "plum tractor quietly 83 violins"
OWNER = {"client_ip": "203.0.113.7", "user_agent": "Mozilla/5.0 (X11; Test)"}
STRANGER = {"client_ip": "198.51.100.9", "user_agent": "curl/8"}
# More than HAProxy's inter x fall (1 s x 2) and a check's time: see deploy/haproxy.cfg.
DRAIN_SECONDS = 5


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, server_url, worker_id):
    """Two replicas (one gunicorn worker and one courier each) and HAProxy in front, on a
    database of their own that they migrate as they start, mail to a loopback relay."""
    folder = tmp_path_factory.mktemp("replicas")
    database_url = ensure_database(server_url, f"identity_replicas_{worker_id}", fresh=True)
    relay = MailServer()
    relay.start()
    proxy_port = free_port()
    env = gunicorn_env(
        database_url,
        SMTP_URL=relay.url,
        PUBLIC_URL=f"http://127.0.0.1:{proxy_port}",
        SECRET_KEY="the same root secret on every replica, 0f3c9a",
        TRUSTED_PROXIES="127.0.0.1",
        DRAIN_SECONDS=DRAIN_SECONDS,
        MAIL_POLL_SECONDS=0.2,
        DATA_DIR=folder / "data",
        **CHEAP,
    )
    replicas = [Replica(f"replica{n}", env, folder / f"replica{n}.log") for n in (1, 2)]
    proxy = Proxy(folder, replicas, proxy_port)
    try:
        for replica in replicas:
            replica.start()
        proxy.start()
        for replica in replicas:
            proxy.wait_for(replica.name, "UP")
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as conn:
            key = site_key_for(
                conn, "copernica.com", pages="https://copernica.example", lists=EVERY_LIST
            )
        yield Deployment(proxy, replicas, relay, key, env)
    finally:
        proxy.stop()
        for replica in replicas:
            replica.stop()
        relay.stop()


class Deployment:
    def __init__(self, proxy: Proxy, replicas: list[Replica], relay: MailServer, key, env):
        self.proxy = proxy
        self.replicas = replicas
        self.relay = relay
        self.key = key
        self.env = env
        self.base = f"http://127.0.0.1:{proxy.port}"

    def call(self, method, path, body=None, token=None, form=None) -> tuple[int, dict]:
        """One request through the proxy: its status and JSON body (or {})."""
        headers = {"Authorization": f"Bearer {token or self.key}"}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if form is not None:
            data, headers["Content-Type"] = form.encode(), "application/x-www-form-urlencoded"
        request = urllib.request.Request(self.base + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                raw = answer.read()
                return answer.status, json.loads(raw) if raw.strip() else {}
        except urllib.error.HTTPError as error:
            with error:
                raw = error.read()
            return error.code, json.loads(raw) if raw.strip() else {}

    def both_serve(self, step):
        """Run `step` and check that both replicas served part of it."""
        before = self.proxy.requests_served()
        result = step()
        after = self.proxy.requests_served()
        served = {name: after[name] - before[name] for name in after}
        assert all(count > 0 for count in served.values()), served
        return result


def mailed_token(relay: MailServer, count: int) -> str:
    """The token of the link in the `count`-th mail the relay took."""
    message = relay.sink.wait_for(count, timeout=20)[count - 1]
    text = message.get_body(("plain",)).get_content()
    return re.search(r"token=([^\s&]+)", text).group(1)


def kid_of(access_token: str) -> str:
    header = access_token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"]


def test_two_replicas_behind_haproxy_answer_as_one(deployment):
    d = deployment
    # Registration's mail is written to the outbox by one replica and taken to the relay
    # by whichever courier claims it; the link proves the address on either replica.
    account = {"email": "anna@example.com", "password": PASSWORD, **OWNER}
    assert d.call("POST", "/v1/auth/register", account)[0] == 202
    verified = d.call("POST", "/v1/auth/verify-email", {"token": mailed_token(d.relay, 1)})
    assert verified[0] == 200, verified

    # Logins, and the access tokens each replica signs pass on the other.
    def log_in():
        answers = [d.call("POST", "/v1/auth/login", account) for _ in range(2)]
        assert [status for status, _ in answers] == [200, 200], answers
        for _, tokens in answers:
            for _ in range(2):
                assert d.call("GET", "/v1/me", token=tokens["access_token"])[0] == 200
        return answers[0][1]

    tokens = d.both_serve(log_in)

    # The throttle counts one account's failures on both replicas together: five cost
    # nothing, the sixth is checked and starts the wait, the seventh waits.
    def fail_to_log_in():
        wrong = {**account, **STRANGER, "password": "not the password at all"}
        return [d.call("POST", "/v1/auth/login", wrong)[0] for _ in range(7)]

    assert d.both_serve(fail_to_log_in) == [401] * 6 + [429]

    # Refresh rotation: each token is spent on use, on whichever replica; a spent one used
    # again ends the whole sign-in, on both.
    def refresh_and_reuse():
        first = tokens["refresh_token"]
        status, second = d.call("POST", "/v1/auth/refresh", {"refresh_token": first, **OWNER})
        assert status == 200
        status, third = d.call(
            "POST", "/v1/auth/refresh", {"refresh_token": second["refresh_token"], **OWNER}
        )
        assert status == 200
        assert d.call("POST", "/v1/auth/refresh", {"refresh_token": first, **OWNER})[0] == 401
        assert (
            d.call("POST", "/v1/auth/refresh", {"refresh_token": third["refresh_token"], **OWNER})[
                0
            ]
            == 401
        )
        for _ in range(2):
            assert d.call("GET", "/v1/me", token=third["access_token"])[0] == 401

    d.both_serve(refresh_and_reuse)

    # One-click unsubscribe: the link one replica exports works on either, once.
    def subscribers() -> list[dict]:
        request = urllib.request.Request(
            f"{d.base}/v1/newsletters/copernica-updates/subscribers",
            headers={"Authorization": f"Bearer {d.key}"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            *rows, end = [json.loads(line) for line in answer.read().splitlines()]
        assert end == {"complete": True, "rows": len(rows)}
        return rows

    def one_click():
        subscription = {"email": "bob@example.com", "consent": {"text": "Yes, updates", **OWNER}}
        path = "/v1/newsletters/copernica-updates/subscriptions"
        status, subscribed = d.call("POST", path, subscription)
        assert (status, subscribed["state"]) == (200, "subscribed"), subscribed
        (row,) = subscribers()
        link = row["unsubscribe_url"].removeprefix(d.base)
        clicks = [d.call("POST", link, form="List-Unsubscribe=One-Click") for _ in range(2)]
        assert [(status, body["changed"], body["state"]) for status, body in clicks] == [
            (200, True, "unsubscribed"),
            (200, False, "unsubscribed"),
        ]
        assert subscribers() == []

    d.both_serve(one_click)

    # Signing-key rotation (a leaked key): within 5 s neither replica takes the old
    # key's tokens or publishes it, and both sign with the new one.
    old_kid = kid_of(tokens["access_token"])
    fresh = d.call("POST", "/v1/auth/login", account)[1]
    rotated = subprocess.run(
        [IDENTITY, "keys", "rotate", "--revoke-previous"],
        env=d.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    new_kid = re.search(r"made (\S+):", rotated.stdout).group(1)

    def old_key_gone():
        refused = [d.call("GET", "/v1/me", token=fresh["access_token"])[0] for _ in range(2)]
        published = [
            {key["kid"] for key in d.call("GET", "/.well-known/jwks.json")[1]["keys"]}
            for _ in range(2)
        ]
        return refused == [401, 401] and all(
            old_kid not in kids and new_kid in kids for kids in published
        )

    wait_until(lambda: d.both_serve(old_key_gone), 10, "the old key gone from both replicas")
    newer = d.both_serve(log_in)
    assert kid_of(newer["access_token"]) == new_kid


def test_a_replica_killed_under_load_loses_only_its_requests_in_hand_and_a_rolling_restart_none(
    deployment, record_property
):
    d = deployment
    proxy, (first, second) = d.proxy, d.replicas
    status, record = d.call("POST", "/v1/profiles", {"email": "x@example.com", "source": "event"})
    assert status in (200, 201)

    # SIGKILL to one replica (the server, its worker, its courier) under load: what
    # reached it before it was gone (its port refusing connections) fails, HAProxy's
    # check takes it out, nothing sent afterwards fails.
    with Load(proxy.port, d.key, record["id"]) as load:
        time.sleep(3)
        killed_at = time.monotonic()
        first.kill()
        gone_at = time.monotonic()
        seconds_to_out = proxy.wait_for(first.name, "DOWN", 10) + (gone_at - killed_at)
        time.sleep(3)
    killed = load.failures()
    seen = [
        (f.failure, round(f.began - killed_at, 3), round(f.ended - killed_at, 3)) for f in killed
    ]
    assert all(f.began < gone_at for f in killed), f"sent after the kill, and failed: {seen}"
    assert seconds_to_out < 3.5
    kill_sent = load.sent()

    first.start()
    proxy.wait_for(first.name, "UP")

    # A rolling restart: SIGTERM to one replica, which drains (503 to HAProxy's check,
    # still answering) then stops; started again once it is out; then the other.
    drained_out = []
    with Load(proxy.port, d.key, record["id"]) as restart:
        time.sleep(2)
        for replica in (first, second):
            replica.process.send_signal(signal.SIGTERM)
            drained_out.append(proxy.wait_for(replica.name, "DOWN", DRAIN_SECONDS))
            assert replica.process.wait(timeout=60) == 0
            replica.start()
            proxy.wait_for(replica.name, "UP")
        time.sleep(2)
    assert [f.failure for f in restart.failures()] == []

    numbers = {
        "clients": load.clients,
        "sent during the kill": kill_sent,
        "failed during the kill": len(killed),
        "ms from SIGKILL to the replica's port closed": round((gone_at - killed_at) * 1000),
        "seconds until HAProxy took the killed replica out": round(seconds_to_out, 2),
        "sent during the rolling restart": restart.sent(),
        "failed during the rolling restart": len(restart.failures()),
        "seconds until HAProxy took each draining replica out": [round(s, 2) for s in drained_out],
    }
    record_property("measured", f"replicas behind HAProxy: {json.dumps(numbers)}")
