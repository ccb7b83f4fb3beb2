"""Which writes wait for the disk: a login's own statements and a refresh's rotation do
not (a crash may forget the last moment of them: a new login); everything else does."""

from identity.store import accounts as store


def _synchronous_commit(conn) -> str:
    return conn.execute("show synchronous_commit").fetchone()["synchronous_commit"]


def test_a_throttle_count_inside_a_larger_change_waits_for_the_disk(conn):
    store.reserve_attempt(conn, "account:x", free=5, window_seconds=900, cap_seconds=900)
    assert _synchronous_commit(conn) == "on"


def test_a_logins_own_count_and_attempt_do_not_wait(conn):
    store.reserve_attempt(
        conn, "account:y", free=5, window_seconds=900, cap_seconds=900, wait_for_disk=False
    )
    assert _synchronous_commit(conn) == "off"


def test_a_recorded_attempt_does_not_wait(conn):
    store.record_attempt(conn, user_id=None, site_id=None, client_ip=None, user_agent=None,
                         outcome="no_account")  # fmt: skip
    assert _synchronous_commit(conn) == "off"
