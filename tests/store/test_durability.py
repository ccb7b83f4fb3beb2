"""Which writes wait for the disk: a login's own statements and a refresh's rotation do
not (a crash may forget the last moment of them: a new login); everything else does."""

from identity.store import throttles as store


def _synchronous_commit(conn) -> str:
    return conn.execute("show synchronous_commit").fetchone()["synchronous_commit"]


def test_a_throttle_count_inside_a_larger_change_waits_for_the_disk(conn):
    store.reserve_attempt(conn, "account:x", free=5, window_seconds=900, cap_seconds=900)
    assert _synchronous_commit(conn) == "on"


def test_a_logins_own_count_does_not_wait(conn):
    started = store.start_login(
        conn,
        "nobody@example.com",
        ip_throttle="ip:192.0.2.1",
        account_throttle="account:y",
        window_seconds=900,
        ip_free=20,
        ip_cap_seconds=900,
        account_free=5,
        account_cap_seconds=900,
    )
    assert started["id"] is None and started["ip_until"] is None
    assert _synchronous_commit(conn) == "off"
    counted = conn.execute("select key, failures from login_throttles order by key").fetchall()
    assert counted == [
        {"key": "account:y", "failures": 1},
        {"key": "ip:192.0.2.1", "failures": 1},
    ]


def test_a_recorded_attempt_does_not_wait(conn):
    store.record_attempt(
        conn, user_id=None, site_id=None, client_ip=None, user_agent=None, outcome="no_account"
    )
    assert _synchronous_commit(conn) == "off"
