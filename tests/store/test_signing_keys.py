"""The signing keys' SQL called directly: one key is the newest at a time, a new key
signs from the database's time it was given, a retired key stays published for as long
as it was told, a revoked one at once no more, a listing never carries a private half,
and changes of the keys wait for each other's lock."""

import threading
from datetime import timedelta

import psycopg
import pytest
from psycopg.rows import dict_row

from identity.store import signing_keys as store
from tests.store.locks import wait_until_blocked


@pytest.fixture
def keys(conn):
    """The test's connection with no signing keys yet."""
    conn.execute("delete from signing_keys")
    return conn


def _insert(conn, kid: str, algorithm: str = "ES256", signs_in: float = 0):
    signs_from = _in(conn, signs_in)
    store.insert_key(
        conn,
        kid=kid,
        algorithm=algorithm,
        public_jwk={"kty": "EC", "kid": kid},
        private_key=f"sealed {kid}".encode(),
        signs_from=signs_from,
    )
    return signs_from


def _now(conn):
    return conn.execute("select now() as now").fetchone()["now"]


def _in(conn, seconds: float):
    """The database's now (the test's transaction began then) and `seconds`."""
    return _now(conn) + timedelta(seconds=seconds)


def _retire(conn, in_seconds: float, publish_seconds: float) -> list[str]:
    return store.retire_signing_keys(conn, _in(conn, in_seconds), publish_seconds)


def test_the_first_key_signs_and_is_published(keys):
    assert store.newest_key_algorithm(keys) is None and store.published_keys(keys) == []
    assert _insert(keys, "k1") == _now(keys)
    assert store.newest_key_algorithm(keys) == "ES256"
    (key,) = store.published_keys(keys)
    assert (key["kid"], key["algorithm"], key["retired_at"]) == ("k1", "ES256", None)
    assert key["signs_from"] == _now(keys)
    assert key["public_jwk"] == {"kty": "EC", "kid": "k1"}
    assert bytes(key["private_key"]) == b"sealed k1"


def test_only_eddsa_and_es256_keys_are_stored(keys):
    _insert(keys, "old", "EdDSA")
    assert store.newest_key_algorithm(keys) == "EdDSA"
    _retire(keys, 0, 60)
    with pytest.raises(psycopg.errors.CheckViolation), keys.transaction():
        _insert(keys, "k1", "HS256")


def test_only_one_key_signs_at_a_time(keys):
    _insert(keys, "k1")
    with pytest.raises(psycopg.errors.UniqueViolation), keys.transaction():
        _insert(keys, "k2")


def test_a_retired_key_is_published_until_its_time_is_up(keys):
    assert _retire(keys, 0, 60) == []  # nothing to retire
    _insert(keys, "k1")
    assert _retire(keys, 0, 600) == ["k1"]
    assert store.newest_key_algorithm(keys) is None
    _insert(keys, "k2")
    keys.execute(
        "update signing_keys set created_at = created_at - interval '1 day' where kid = 'k1'"
    )
    published = store.published_keys(keys)
    assert [k["kid"] for k in published] == ["k2", "k1"]  # newest first
    assert (published[1]["publish_until"] - published[1]["retired_at"]).total_seconds() == 600
    keys.execute("update signing_keys set publish_until = now() where kid = 'k1'")
    assert [k["kid"] for k in store.published_keys(keys)] == ["k2"]
    listed = store.list_keys(keys)
    assert [k["kid"] for k in listed] == ["k2", "k1"]  # every key ever made
    assert all("private_key" not in k for k in listed)


def test_a_rotation_retires_the_signing_key_when_the_new_one_starts(keys):
    _insert(keys, "k1")
    assert _retire(keys, 335, 960) == ["k1"]
    signs_from = _insert(keys, "k2", signs_in=335)
    assert (signs_from - _now(keys)).total_seconds() == 335
    k1, k2 = sorted(store.published_keys(keys), key=lambda k: k["kid"])
    assert k1["retired_at"] == signs_from == k2["signs_from"]
    assert (k1["publish_until"] - signs_from).total_seconds() == 960


def test_a_second_rotation_before_the_first_key_signs_leaves_the_first_retirement_alone(keys):
    _insert(keys, "k1")
    _retire(keys, 335, 960)
    _insert(keys, "k2", signs_in=335)
    # The pending k2 retires when k3 starts; k1 still retires when k2 starts.
    assert _retire(keys, 400, 960) == ["k2"]
    retired = {
        k["kid"]: (k["retired_at"] - _now(keys)).total_seconds() for k in store.published_keys(keys)
    }
    assert retired == {"k1": 335, "k2": 400}


def test_an_emergency_rotation_retires_every_key_that_signs_or_would_at_once(keys):
    _insert(keys, "k1")
    _retire(keys, 335, 960)
    _insert(keys, "k2", signs_in=335)
    assert sorted(_retire(keys, 0, 960)) == ["k1", "k2"]
    retired = {k["kid"]: k["retired_at"] for k in store.published_keys(keys)}
    assert retired == {"k1": _now(keys), "k2": _now(keys)}


def test_revoked_keys_leave_the_published_ones_at_once(keys):
    _insert(keys, "k1")
    _retire(keys, 0, 960)
    assert store.revoke_published_keys(keys) == ["k1"]
    _insert(keys, "k2")
    assert [k["kid"] for k in store.published_keys(keys)] == ["k2"]
    assert store.revoke_published_keys(keys) == ["k2"] and store.published_keys(keys) == []
    listed = {k["kid"]: k["revoked_at"] for k in store.list_keys(keys)}
    assert listed == {"k1": _now(keys), "k2": _now(keys)}


def test_changes_of_the_keys_wait_for_each_other(database_url):
    done = threading.Event()
    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as first,
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as second,
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as observer,
    ):

        def change():
            with second.transaction():
                store.lock(second)
                done.set()

        thread = threading.Thread(target=change)
        with first.transaction():
            store.lock(first)
            thread.start()
            wait_until_blocked(observer, second.info.backend_pid)
            assert not done.is_set()
        thread.join(timeout=10)  # the first's transaction ended: the lock went with it
        assert done.is_set()
