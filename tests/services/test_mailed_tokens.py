"""Mailed tokens against a real PostgreSQL: hashed at rest, one purpose, single use,
expiring, voided, counted per hour."""

from datetime import timedelta

from identity.security.secret_tokens import secret_hash
from identity.services import mailed_tokens


def _record(conn, email="anna@example.com"):
    return conn.execute(
        "insert into users (email, email_key) values (%s, %s) returning id", (email, email)
    ).fetchone()["id"]


def test_a_token_is_kept_only_as_its_hash(conn):
    user_id = _record(conn)
    token = mailed_tokens.issue(conn, "password_reset", user_id, timedelta(minutes=30))
    stored = conn.execute("select token_hash from account_tokens").fetchall()
    assert [row["token_hash"] for row in stored] == [secret_hash(token)]
    assert token.encode() not in b"".join(bytes(row["token_hash"]) for row in stored)


def test_a_token_is_taken_once_and_only_for_its_purpose(conn):
    user_id = _record(conn)
    token = mailed_tokens.issue(conn, "password_reset", user_id, timedelta(minutes=30), {"a": 1})
    assert mailed_tokens.take(conn, token, ("verify_email",)) is None
    assert mailed_tokens.peek(conn, token, ("password_reset",)) == user_id
    taken = mailed_tokens.take(conn, token, ("password_reset",))
    assert taken["user_id"] == user_id and taken["payload"] == {"a": 1}
    assert mailed_tokens.take(conn, token, ("password_reset",)) is None
    assert mailed_tokens.peek(conn, token, ("password_reset",)) is None


def test_an_expired_or_voided_token_is_refused(conn):
    user_id = _record(conn)
    expired = mailed_tokens.issue(conn, "verify_email", user_id, timedelta(seconds=-1))
    voided = mailed_tokens.issue(conn, "verify_email", user_id, timedelta(hours=1))
    other = mailed_tokens.issue(conn, "password_reset", user_id, timedelta(hours=1))
    mailed_tokens.void(conn, user_id, ("verify_email",))
    assert mailed_tokens.take(conn, expired, ("verify_email",)) is None
    assert mailed_tokens.take(conn, voided, ("verify_email",)) is None
    assert mailed_tokens.take(conn, other, ("password_reset",)) is not None


def test_mails_are_counted_per_record_and_purpose(conn):
    user_id, other = _record(conn), _record(conn, "bob@example.com")
    for _ in range(mailed_tokens.MAILS_AN_HOUR):
        assert mailed_tokens.may_mail(conn, user_id, "password_reset")
        mailed_tokens.count_only(conn, "password_reset", user_id)
    assert not mailed_tokens.may_mail(conn, user_id, "password_reset")
    assert mailed_tokens.may_mail(conn, user_id, "verify_email")
    assert mailed_tokens.may_mail(conn, other, "password_reset")


def test_mails_asked_for_from_a_network_spend_its_budget_and_the_cap_for_new_ones(conn):
    user_id = _record(conn)
    per_network = mailed_tokens.MAILS_AN_HOUR_PER_NETWORK
    for _ in range(per_network):
        assert mailed_tokens.may_mail(conn, user_id, "password_reset", "192.0.2.7")
        mailed_tokens.count_only(conn, "password_reset", user_id, "192.0.2.7")
    assert not mailed_tokens.may_mail(conn, user_id, "password_reset", "192.0.2.7")
    assert not mailed_tokens.may_mail(conn, user_id, "password_reset", "192.0.2.7", known=True)
    # Other networks, until the cap for networks not known is spent...
    networks = iter(f"198.18.0.{n}" for n in range(100))
    while mailed_tokens.may_mail(conn, user_id, "password_reset", network := next(networks)):
        mailed_tokens.count_only(conn, "password_reset", user_id, network)
    made = mailed_tokens.MAILS_AN_HOUR_FROM_NEW_NETWORKS
    assert conn.execute("select count(*) as n from account_tokens").fetchone()["n"] == made
    # ...which a known network is not held by, nor is another purpose.
    assert mailed_tokens.may_mail(conn, user_id, "password_reset", "203.0.113.7", known=True)
    assert mailed_tokens.may_mail(conn, user_id, "verify_email", "198.18.0.99")
    # A token not mailed (a registration kept over the limit) is not counted.
    mailed_tokens.issue(
        conn, "verify_email", user_id, timedelta(hours=1), mailed=False, asked_from="192.0.2.9"
    )
    for _ in range(per_network - 1):
        mailed_tokens.count_only(conn, "verify_email", user_id, "192.0.2.9")
    assert mailed_tokens.may_mail(conn, user_id, "verify_email", "192.0.2.9")


def test_a_presented_token_with_a_lone_surrogate_matches_nothing(conn):
    user_id = _record(conn)
    mailed_tokens.issue(conn, "password_reset", user_id, timedelta(hours=1))
    assert mailed_tokens.take(conn, "\udc80abc", ("password_reset",)) is None
