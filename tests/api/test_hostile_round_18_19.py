"""Hostile round on issues 18 and 19: what broke, each a failing test marked xfail(strict)
until it is fixed. The write-ups are in the hostile report."""

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from identity.api.guards import SERVICES
from tests.api.liveserver import serving
from tests.api.test_accounts import BROWSER, PASSWORD, as_user, login, sign_up
from tests.sites import site_key_for
from tests.test_cli import free_port, stop, wait_ready

NEW_PASSWORD = "violet harbour sings 4711 oboes"
THIEF_PASSWORD = "thief keeps this one 90210 kazoo"


# --- the contract's bodies ------------------------------------------------------------------


def test_a_change_of_address_needs_the_current_password(site, conn, app):
    sign_up(site, conn)
    user = as_user(app, login(site).get_json()["access_token"])
    # What a thief with a 15-minute access token (and no password) sends is refused...
    thief = user.post("/v1/me/email", json={"new_email": "thief@example.net", **BROWSER})
    assert thief.status_code == 422
    assert "current_password" in thief.get_json()["errors"]
    # ...and the contract's body is taken (with the client_ip the contract requires of a
    # change of address).
    answer = user.post(
        "/v1/me/email",
        json={"new_email": "anna@work.example", "current_password": PASSWORD, **BROWSER},
    )
    assert answer.status_code == 202, answer.get_data(as_text=True)


def test_the_browser_the_contract_requires_is_taken_on_password_change_and_reset(site, conn, app):
    sign_up(site, conn)
    user = as_user(app, login(site).get_json()["access_token"])
    changed = user.put(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD, **BROWSER},
    )
    assert changed.status_code == 204, changed.get_data(as_text=True)
    asked = site.post("/v1/auth/password-reset", json={"email": "anna@example.com", **BROWSER})
    assert asked.status_code == 202, asked.get_data(as_text=True)


# --- races ----------------------------------------------------------------------------------


class _ChangeMeanwhile:
    """The settings' Passwords, but the first check of a current password lets another
    change of the password land first (what a parallel request does on another worker)."""

    def __init__(self, real, meanwhile):
        self._real, self._meanwhile = real, meanwhile

    def __getattr__(self, name):
        return getattr(self._real, name)

    def verify(self, *args, **kwargs):
        right = self._real.verify(*args, **kwargs)
        meanwhile, self._meanwhile = self._meanwhile, None
        if meanwhile is not None:
            meanwhile()
        return right


def test_a_password_change_that_another_change_overtook_is_a_409(site, conn, app, monkeypatch):
    from identity.store.transactions import UnitOfWork

    sign_up(site, conn)
    owner = login(site).get_json()["access_token"]
    thief = login(site, client_ip="198.51.100.66").get_json()["access_token"]
    services = app.extensions[SERVICES]
    own = services.accounts.settings

    def owner_changes_it():
        # The owner, fearing the password is known, changes it: every other sign-in (the
        # thief's) ends.
        uow = UnitOfWork.of(conn)
        principal = services.accounts.sessions.signed_in(uow, owner)
        own.change_password(uow, principal, PASSWORD, NEW_PASSWORD)
        uow.commit()

    monkeypatch.setattr(own, "passwords", _ChangeMeanwhile(own.passwords, owner_changes_it))
    answer = as_user(app, thief).put(
        "/v1/me/password",
        json={"current_password": PASSWORD, "new_password": THIEF_PASSWORD, **BROWSER},
    )
    assert answer.status_code in (401, 409), answer.status_code
    assert login(site, password=NEW_PASSWORD).status_code == 200


@pytest.mark.committing
def test_a_registration_submitted_twice_at_once_keeps_its_password(pooled_app, committing_db):
    key = site_key_for(committing_db, "copernica.com")
    registration = pooled_app.extensions[SERVICES].accounts.registration
    both_read = threading.Barrier(2, timeout=10)
    start = registration._start

    def start_together(*args, **kwargs):
        # Both requests have compared with the pending registrations before either
        # writes: what two gunicorn workers do with a double-clicked form.
        with contextlib.suppress(threading.BrokenBarrierError):
            both_read.wait()
        return start(*args, **kwargs)

    registration._start = start_together
    body = {"email": "anna@example.com", "password": PASSWORD, **BROWSER}
    headers = {"Authorization": f"Bearer {key}"}
    with serving(pooled_app) as base, requests.Session() as session:
        session.headers.update(headers)

        def register(_):
            return requests.post(f"{base}/v1/auth/register", json=body, headers=headers, timeout=30)

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(register, range(2)))
        assert [a.status_code for a in answers] == [202, 202]
        token = committing_db.execute(
            "select mail_values->>'token' as token from outbox where template = 'verify_email'"
            " order by id desc limit 1"
        ).fetchone()["token"]
        assert session.post(f"{base}/v1/auth/verify-email", json={"token": token}).ok
        logged_in = session.post(
            f"{base}/v1/auth/login",
            json={"email": "anna@example.com", "password": PASSWORD, **BROWSER},
        )
        assert logged_in.status_code == 200, logged_in.text


# --- a body that trickles in holds a pooled connection ----------------------------------------

POOL_MAX = 2
BODY_TIMEOUT = 8


@pytest.fixture
def small_pool_server(database_url, committing_db, tmp_path):
    """`identity serve`'s gunicorn, one worker with a pool of two connections."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_DB_POOL_MAX": str(POOL_MAX),
        "IDENTITY_DB_TIMEOUT": "1",
        "IDENTITY_BODY_TIMEOUT_SECONDS": str(BODY_TIMEOUT),
        "IDENTITY_IMPORT_PROCESSES": "0",
        "IDENTITY_CHEAP_PASSWORD_HASHING": "1",
        "IDENTITY_PASSWORD_TIME_COST": "1",
        "IDENTITY_PASSWORD_MEMORY_KIB": "8",
    }
    command = [
        sys.executable, "-m", "gunicorn", "--config", "python:identity.gunicorn_conf",
        "--bind", f"127.0.0.1:{port}", "--workers", "1", "identity:create_app()",
    ]  # fmt: skip
    with (tmp_path / "gunicorn.log").open("wb") as log:
        server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
        try:
            wait_ready(f"http://127.0.0.1:{port}", server)
            yield port, site_key_for(committing_db, "copernica.com")
        finally:
            stop(server)


@pytest.mark.committing
@pytest.mark.slow
def test_bodies_that_trickle_in_do_not_take_the_pool(small_pool_server, committing_db):
    port, key = small_pool_server
    base = f"http://127.0.0.1:{port}"
    site = requests.Session()
    site.headers["Authorization"] = f"Bearer {key}"
    body = {"email": "anna@example.com", "password": PASSWORD, **BROWSER}
    assert site.post(f"{base}/v1/auth/register", json=body).status_code == 202
    token = committing_db.execute(
        "select mail_values->>'token' as token from outbox where template = 'verify_email'"
    ).fetchone()["token"]
    assert site.post(f"{base}/v1/auth/verify-email", json={"token": token}).ok
    access = site.post(f"{base}/v1/auth/login", json=body | {"password": PASSWORD}).json()[
        "access_token"
    ]
    edit = b'{"first_name": "Anna"}'
    slow = []
    try:
        for _ in range(POOL_MAX + 1):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(
                (
                    f"PATCH /v1/me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {access}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(edit)}\r\n\r\n"
                ).encode()
                + edit[:1]
            )
            slow.append(sock)
        time.sleep(1)
        me = requests.get(
            f"{base}/v1/me", headers={"Authorization": f"Bearer {access}"}, timeout=BODY_TIMEOUT
        )
        assert me.status_code == 200, me.text
    finally:
        for sock in slow:
            sock.close()
