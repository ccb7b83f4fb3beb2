"""The account flows through their Python API, without HTTP: what each writes, what it
refuses, and that argon2 and zxcvbn never run while a connection is held."""

import pytest

from identity.errors import Conflict, InvalidInput, TooManyRequests, Unauthenticated
from identity.services.principal import Principal
from tests.outbox import mailed

PASSWORD = "plum tractor quietly 83 violins"
OTHER_PASSWORD = "seven amber kites over Delft"


def register(accounts, watched, principal, email="anna@example.com", password=PASSWORD):
    body = {"email": email, "password": password, "first_name": "Anna"}
    watched.uow.run(lambda: accounts.registration.register(watched.uow, principal, body))


def signed_up(accounts, watched, conn, principal, email="anna@example.com"):
    register(accounts, watched, principal, email)
    token = mailed(conn, email, "verify_email")["token"]
    return watched.uow.run(
        lambda: accounts.registration.verify_email(watched.uow, principal, token)
    )


def log_in(accounts, watched, principal, email="anna@example.com", password=PASSWORD):
    return watched.uow.run(lambda: accounts.login.log_in(watched.uow, principal, email, password))


def test_registering_hashes_with_nothing_held_and_waits_for_proof(
    accounts, watched, conn, principal
):
    register(accounts, watched, principal)
    assert watched.calls >= 2  # the policy's check, the hash
    user = conn.execute("select status, password_hash from users").fetchone()
    assert user["password_hash"] is None  # nothing reaches the record before proof
    record = signed_up(accounts, watched, conn, principal, "bob@example.com")
    assert record["status"] == "registered"


def test_a_registration_made_again_replaces_the_same_persons_only(
    accounts, watched, conn, principal
):
    for _ in range(2):
        register(accounts, watched, principal)  # a double submit
    tokens = conn.execute(
        "select used_at is null as live, payload ? 'superseded' as superseded"
        " from account_tokens where purpose = 'verify_email' order by created_at"
    ).fetchall()
    assert [(t["live"], t["superseded"]) for t in tokens] == [(False, True), (True, False)]
    token = mailed(conn, "anna@example.com", "verify_email")["token"]
    watched.uow.run(lambda: accounts.registration.verify_email(watched.uow, principal, token))
    assert conn.execute("select password_hash is not null as set from users").fetchone()["set"]


def test_only_the_newest_pending_registrations_are_compared(accounts, watched, conn, principal):
    for n in range(5):
        register(accounts, watched, principal, password=f"{PASSWORD} {n}")
    watched.calls = 0
    register(accounts, watched, principal, password=f"{PASSWORD} 9")
    # the policy's check, the hash, and three comparisons: never one per registration
    assert watched.calls == 5


def test_a_login_checks_the_password_with_nothing_held(accounts, watched, conn, principal):
    signed_up(accounts, watched, conn, principal)
    watched.calls = 0
    tokens = log_in(accounts, watched, principal)
    assert tokens.user["email"] == "anna@example.com" and watched.calls == 1
    attempts = conn.execute("select outcome from login_attempts order by id").fetchall()
    assert [a["outcome"] for a in attempts] == ["success"]


def test_a_wrong_password_is_recorded_and_refused(accounts, watched, conn, principal):
    signed_up(accounts, watched, conn, principal)
    with pytest.raises(Unauthenticated):
        log_in(accounts, watched, principal, password=OTHER_PASSWORD)
    with pytest.raises(Unauthenticated):
        log_in(accounts, watched, principal, email="nobody@example.com")
    attempts = conn.execute("select outcome from login_attempts order by id").fetchall()
    assert [a["outcome"] for a in attempts] == ["wrong_password", "no_account"]


def test_registrations_of_a_caller_with_no_client_ip_are_limited_per_address(
    accounts, watched, conn, principal
):
    """The HTTP face requires a client IP; a caller that passes none is still limited."""
    nowhere = principal.with_browser(principal.browser.__class__())
    free = accounts.registration.settings.account_free_failures
    for n in range(free + 1):
        register(accounts, watched, nowhere, password=f"{PASSWORD} {n}")
    with pytest.raises(TooManyRequests):
        register(accounts, watched, nowhere)


def test_failures_past_the_free_ones_wait(accounts, watched, conn, principal):
    signed_up(accounts, watched, conn, principal)
    free = accounts.login.settings.account_free_failures
    for _ in range(free + 1):
        with pytest.raises(Unauthenticated):
            log_in(
                accounts,
                watched,
                principal.with_browser(principal.browser.__class__()),
                password=OTHER_PASSWORD,
            )
    with pytest.raises(TooManyRequests):
        log_in(accounts, watched, principal.with_browser(principal.browser.__class__()))


def test_a_live_sign_in_and_an_ended_one(accounts, watched, conn, principal):
    signed_up(accounts, watched, conn, principal)
    tokens = log_in(accounts, watched, principal)
    person = accounts.sessions.signed_in(watched.uow, tokens.access_token)
    assert person.user.record["email"] == "anna@example.com"
    assert person.site_name == "copernica.com"
    watched.uow.run(lambda: accounts.sessions.log_out(watched.uow, principal, tokens.refresh_token))
    with pytest.raises(Unauthenticated):
        accounts.sessions.signed_in(watched.uow, tokens.access_token)


def test_a_refresh_token_shown_twice_ends_its_sign_in(accounts, watched, conn, principal):
    signed_up(accounts, watched, conn, principal)
    first = log_in(accounts, watched, principal)
    second = watched.uow.run(
        lambda: accounts.sessions.refresh(watched.uow, principal, first.refresh_token)
    )
    with pytest.raises(Unauthenticated, match="used before"):
        watched.uow.run(
            lambda: accounts.sessions.refresh(watched.uow, principal, first.refresh_token)
        )
    with pytest.raises(Unauthenticated):
        accounts.sessions.signed_in(watched.uow, second.access_token)


def _person(accounts, watched, principal) -> Principal:
    tokens = log_in(accounts, watched, principal)
    return accounts.sessions.signed_in(watched.uow, tokens.access_token).with_browser(
        principal.browser
    )


def test_a_password_change_hashes_with_nothing_held(accounts, watched, conn, principal):
    signed_up(accounts, watched, conn, principal)
    person = _person(accounts, watched, principal)
    watched.calls = 0
    watched.uow.run(
        lambda: accounts.settings.change_password(watched.uow, person, PASSWORD, OTHER_PASSWORD)
    )
    assert watched.calls >= 3  # the current one, the policy with the history, the hash
    log_in(accounts, watched, principal, password=OTHER_PASSWORD)
    with pytest.raises(InvalidInput):  # the history refuses the last five
        watched.uow.run(
            lambda: accounts.settings.change_password(watched.uow, person, OTHER_PASSWORD, PASSWORD)
        )


def test_a_password_changed_meanwhile_is_a_conflict(accounts, watched, conn, principal):
    from identity.services.accounts.settings import PasswordChange
    from identity.services.sites import mailing_site

    signed_up(accounts, watched, conn, principal)
    site = mailing_site(watched.uow, principal)
    user_id = conn.execute("select id from users").fetchone()["id"]
    passwords = accounts.settings.passwords
    prepared = PasswordChange.prepare(watched.uow, passwords, user_id, OTHER_PASSWORD)
    third = PasswordChange.prepare(watched.uow, passwords, user_id, "third quiet orchard 61")
    third.write(conn, site)
    with pytest.raises(Conflict):
        prepared.write(conn, site)


def test_a_reset_sets_the_password_once(accounts, watched, conn, principal):
    signed_up(accounts, watched, conn, principal)
    watched.uow.run(
        lambda: accounts.recovery.request_reset(watched.uow, principal, "anna@example.com")
    )
    token = mailed(conn, "anna@example.com", "password_reset")["token"]
    watched.calls = 0
    watched.uow.run(lambda: accounts.recovery.reset(watched.uow, principal, token, OTHER_PASSWORD))
    assert watched.calls >= 2
    log_in(accounts, watched, principal, password=OTHER_PASSWORD)
    with pytest.raises(InvalidInput):
        watched.uow.run(
            lambda: accounts.recovery.reset(watched.uow, principal, token, "again 77 owls")
        )


def test_a_reset_for_an_unknown_address_sends_nothing(accounts, watched, conn, principal):
    watched.uow.run(
        lambda: accounts.recovery.request_reset(watched.uow, principal, "nobody@example.com")
    )
    assert conn.execute("select count(*) as n from outbox").fetchone()["n"] == 0


def test_a_hash_made_with_older_parameters_is_made_anew_at_a_good_login(
    accounts, watched, conn, principal
):
    from identity.security.passwords import Passwords

    signed_up(accounts, watched, conn, principal)
    older = Passwords(time_cost=2, memory_kib=64, parallelism=1).hash(PASSWORD)
    conn.execute("update users set password_hash = %s", (older,))
    log_in(accounts, watched, principal)
    now = conn.execute("select password_hash from users").fetchone()["password_hash"]
    assert now != older and not accounts.login.passwords.needs_rehash(now)
    log_in(accounts, watched, principal)  # the new hash takes the same password
    with pytest.raises(Unauthenticated):
        log_in(accounts, watched, principal, password=OTHER_PASSWORD)
