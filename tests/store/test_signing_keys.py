"""The signing keys' SQL called directly: one key signs at a time, a retired key stays
published for as long as it was told, a listing never carries a private half, and
changes of the keys wait for each other's lock."""

import threading

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


def _insert(conn, kid: str) -> None:
    store.insert_key(
        conn,
        kid=kid,
        algorithm="EdDSA",
        public_jwk={"kty": "OKP", "kid": kid},
        private_key=f"sealed {kid}".encode(),
    )


def test_the_first_key_signs_and_is_published(keys):
    assert not store.has_signing_key(keys) and store.published_keys(keys) == []
    _insert(keys, "k1")
    assert store.has_signing_key(keys)
    (key,) = store.published_keys(keys)
    assert (key["kid"], key["algorithm"], key["retired_at"]) == ("k1", "EdDSA", None)
    assert key["public_jwk"] == {"kty": "OKP", "kid": "k1"}
    assert bytes(key["private_key"]) == b"sealed k1"


def test_only_one_key_signs_at_a_time(keys):
    _insert(keys, "k1")
    with pytest.raises(psycopg.errors.UniqueViolation), keys.transaction():
        _insert(keys, "k2")


def test_a_retired_key_is_published_until_its_time_is_up(keys):
    assert store.retire_signing_key(keys, 60) is None  # nothing to retire
    _insert(keys, "k1")
    assert store.retire_signing_key(keys, 600) == "k1"
    assert not store.has_signing_key(keys)
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
