import base64
import hashlib
import hmac
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from uuid import uuid4

import psycopg
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
)
from joserfc import jws
from joserfc.jwk import ECKey, OKPKey
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from identity.errors import ConfigurationError, Unauthenticated
from identity.security.access_tokens import (
    _REGISTRIES,
    EXPIRED,
    INVALID,
    LEEWAY_SECONDS,
    RELOAD_SECONDS,
    UNKNOWN_KID_RELOAD_SECONDS,
    KeyRing,
    issue_access_token,
    open_private_key,
    publish_seconds,
    rotate_signing_key,
    seal_private_key,
    signs_in_seconds,
)

SECRET = "a-test-secret-of-more-than-32-characters"
ES256, EDDSA = _REGISTRIES["ES256"], _REGISTRIES["EdDSA"]
ISSUER = "https://identity.example.com"
SITE = "copernica.com"
USER = uuid4()


class Clock:
    """Wall time that only moves when a test moves it; a second ahead at first, so what
    the database did a moment ago has happened by this clock."""

    def __init__(self):
        self.now = float(int(time.time()) + 1)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def ring(conn, clock):
    return KeyRing(lambda: nullcontext(conn), SECRET, clock=clock)


def issue(ring, clock, **kwargs):
    return issue_access_token(ring, user_id=USER, site=SITE, issuer=ISSUER, now=clock(), **kwargs)[
        0
    ]


def verify(ring, token, audience=SITE):
    return ring.verify(token, audience=audience, issuer=ISSUER)


def refused(ring, token, detail=INVALID, audience=SITE):
    with pytest.raises(Unauthenticated) as raised:
        verify(ring, token, audience)
    assert raised.value.detail == detail


def signing_key(conn) -> tuple[str, ECKey]:
    """The service's own signing key (the newest), for tokens it would never make."""
    row = conn.execute("select * from signing_keys where retired_at is null").fetchone()
    raw = open_private_key(SECRET, row["kid"], row["private_key"])
    return row["kid"], ECKey.import_key(load_der_private_key(raw, password=None))


def es256_signature(key: ECKey, signing_input: str) -> str:
    """As JWS has it (RFC 7518 3.4): r and s, 32 bytes each, rather than DER."""
    r, s = decode_dss_signature(
        key.private_key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    )
    return _b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def legacy_eddsa_key(conn) -> tuple[str, OKPKey]:
    """A key as the service made them before ES256 (EdDSA, the raw Ed25519 private half
    sealed), signing for an hour already: a database from before the switch."""
    private = Ed25519PrivateKey.generate()
    key = OKPKey.import_key(private)
    kid = key.thumbprint()
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    conn.execute(
        """
        insert into signing_keys (kid, algorithm, public_jwk, private_key, created_at, signs_from)
        values (%(kid)s, 'EdDSA', %(jwk)s, %(sealed)s, now() - interval '1 hour',
                now() - interval '1 hour')
        """,
        {
            "kid": kid,
            "jwk": Jsonb(key.as_dict(private=False, kid=kid, alg="EdDSA", use="sig")),
            "sealed": seal_private_key(SECRET, kid, raw),
        },
    )
    return kid, key


def header_of(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _segment(value: dict) -> str:
    return _b64(json.dumps(value).encode())


def good_claims(clock, **changes) -> dict:
    claims = {
        "iss": ISSUER,
        "sub": str(USER),
        "aud": SITE,
        "iat": int(clock()),
        "exp": int(clock()) + 900,
        "jti": "j1",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def signed_by_us(conn, header_changes: dict, claims: dict) -> str:
    """Signed with the real key, so only what is in the token is wrong (a header field
    changed to None is left out)."""
    kid, key = signing_key(conn)
    header = {"alg": "ES256", "kid": kid, "typ": "JWT", **header_changes}
    header = {name: value for name, value in header.items() if value is not None}
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    return f"{signing_input}.{es256_signature(key, signing_input)}"


# --- signing and checking ---------------------------------------------------------------


def test_a_token_round_trips_with_the_claims_and_header_the_sites_expect(ring, clock, conn):
    token, expires_in = issue_access_token(
        ring, user_id=USER, site=SITE, issuer=ISSUER, now=clock()
    )
    assert expires_in == 900
    claims = verify(ring, token)
    assert claims == {
        "iss": ISSUER,
        "sub": str(USER),
        "aud": SITE,
        "iat": int(clock()),
        "exp": int(clock()) + 900,
        "jti": claims["jti"],
    }
    assert len(claims["jti"]) >= 22
    kid = conn.execute("select kid from signing_keys").fetchone()["kid"]
    assert header_of(token) == {"alg": "ES256", "kid": kid, "typ": "JWT"}
    assert ring.verify(token, audience=None, issuer=ISSUER) == claims


def test_every_token_has_its_own_id(ring, clock):
    assert verify(ring, issue(ring, clock))["jti"] != verify(ring, issue(ring, clock))["jti"]


def test_extra_claims_ride_along_but_cannot_replace_the_registered_ones(ring, clock):
    act = {"sub": "staff:42"}
    token = issue(ring, clock, extra={"act": act, "sid": "s1", "sub": "someone-else", "aud": "x"})
    claims = verify(ring, token)
    assert claims["act"] == act and claims["sid"] == "s1"
    assert claims["sub"] == str(USER) and claims["aud"] == SITE


def test_a_token_expired_within_the_leeway_still_passes(ring, clock):
    token = issue(ring, clock, lifetime_seconds=60)
    clock.advance(60 + 20)
    assert verify(ring, token)["sub"] == str(USER)
    clock.advance(20)
    refused(ring, token, EXPIRED)


# --- what is refused --------------------------------------------------------------------


def test_a_token_made_by_hand_as_below_passes_when_nothing_is_wrong(ring, clock, conn):
    """So each refusal below is for what its test changes."""
    issue(ring, clock)
    assert verify(ring, signed_by_us(conn, {}, good_claims(clock)))["jti"] == "j1"


def test_alg_none_is_refused(ring, clock, conn):
    token = issue(ring, clock)
    kid = header_of(token)["kid"]
    for alg in ("none", "None", "NONE"):
        header = _segment({"alg": alg, "kid": kid, "typ": "JWT"})
        unsigned = f"{header}.{_segment(good_claims(clock))}."
        refused(ring, unsigned)
        refused(ring, unsigned + token.split(".")[2])


def test_hs256_signed_with_the_public_key_is_refused(ring, clock, conn):
    issue(ring, clock)
    kid, key = signing_key(conn)
    public = key.as_dict(private=False)
    header = _segment({"alg": "HS256", "kid": kid, "typ": "JWT"})
    signing_input = f"{header}.{_segment(good_claims(clock))}"
    for secret in (
        base64.urlsafe_b64decode(public["x"] + "="),
        json.dumps(public).encode(),
        key.as_pem(private=False),
    ):
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        refused(ring, f"{signing_input}.{_b64(signature)}")


@pytest.mark.parametrize("alg", ["RS256", "ES384", "EdDSA", "Ed25519", "ES256 "])
def test_any_other_algorithm_is_refused(ring, clock, conn, alg):
    issue(ring, clock)
    kid, _ = signing_key(conn)
    header = _segment({"alg": alg, "kid": kid, "typ": "JWT"})
    refused(ring, f"{header}.{_segment(good_claims(clock))}.{_b64(b'x' * 64)}")


def test_a_token_signed_by_another_key_is_refused(ring, clock, conn):
    issue(ring, clock)
    kid, _ = signing_key(conn)
    stranger = ECKey.generate_key("P-256")
    payload = json.dumps(good_claims(clock)).encode()
    for header_kid in (kid, stranger.thumbprint(), "", "../../etc/passwd"):
        header = {"alg": "ES256", "kid": header_kid, "typ": "JWT"}
        refused(ring, jws.serialize_compact(header, payload, stranger, registry=ES256))


@pytest.mark.parametrize("kid", [None, 7, ["a"]])
def test_a_token_without_a_kid_of_ours_is_refused(ring, clock, conn, kid):
    issue(ring, clock)
    refused(ring, signed_by_us(conn, {"kid": kid}, good_claims(clock)))


@pytest.mark.parametrize(
    "header",
    [
        {"typ": "at+jwt"},
        {"typ": "JWS"},
        {"typ": None},
        {"jku": "https://attacker.example/jwks.json"},
        {"b64": False, "crit": ["b64"]},
        {"cty": "JWT"},
    ],
)
def test_a_header_other_than_alg_kid_and_typ_jwt_is_refused(ring, clock, conn, header):
    issue(ring, clock)
    refused(ring, signed_by_us(conn, header, good_claims(clock)))


@pytest.mark.parametrize(
    "changes",
    [
        {"iss": "https://evil.example.com"},
        {"iss": None},
        {"aud": "smtpeter.com"},
        {"aud": None},
        {"exp": None},
        {"exp": "never"},
        {"sub": None},
        {"sub": 42},
        {"iat": None},
        {"iat": "2026-01-01"},
    ],
    ids=lambda changes: ", ".join(f"{k}={v}" for k, v in changes.items()),
)
def test_claims_that_do_not_hold_are_refused(ring, clock, conn, changes):
    issue(ring, clock)
    refused(ring, signed_by_us(conn, {}, good_claims(clock, **changes)))


def test_a_token_from_the_future_is_refused(ring, clock, conn):
    issue(ring, clock)
    later = int(clock()) + 600
    refused(ring, signed_by_us(conn, {}, good_claims(clock, iat=later, exp=later + 900)))
    refused(ring, signed_by_us(conn, {}, good_claims(clock, nbf=later)))


def test_the_audience_is_checked_only_when_given(ring, clock):
    token = issue(ring, clock)
    refused(ring, token, audience="mailerq.com")
    assert ring.verify(token, audience=None, issuer=ISSUER)["aud"] == SITE
    with pytest.raises(Unauthenticated):
        ring.verify(token, audience=None, issuer="https://elsewhere.example.com")


def test_a_tampered_payload_is_refused(ring, clock):
    header, payload, signature = issue(ring, clock).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    for tampered in (
        claims | {"sub": str(uuid4())},
        claims | {"exp": claims["exp"] + 3600},
        claims | {"aud": "mailerq.com"},
    ):
        refused(ring, f"{header}.{_segment(tampered)}.{signature}", audience=tampered["aud"])


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-1],
        lambda token: token[:-10],
        lambda token: token.rsplit(".", 1)[0],
        lambda token: token.rsplit(".", 1)[0] + ".",
        lambda token: token + ".",
        lambda token: token.replace(".", "", 1),
        lambda token: "",
        lambda token: "...",
        lambda token: "not a token",
        lambda token: token + "é",
        lambda token: token + "A" * 5000,
        lambda token: None,
        lambda token: token.encode(),
    ],
)
def test_a_malformed_token_is_refused(ring, clock, mangle):
    refused(ring, mangle(issue(ring, clock)))


def test_a_refusal_says_nothing_about_why(ring, clock, conn):
    issue(ring, clock)
    details = set()
    for claims in (good_claims(clock, iss="x"), good_claims(clock, aud="x"), {"a": 1}):
        with pytest.raises(Unauthenticated) as raised:
            verify(ring, signed_by_us(conn, {}, claims))
        details.add(raised.value.detail)
    assert details == {INVALID}


# --- keys: made, stored, rotated --------------------------------------------------------


def test_the_first_token_makes_the_first_key(ring, clock, conn):
    assert conn.execute("select count(*) as n from signing_keys").fetchone()["n"] == 0
    issue(ring, clock)
    issue(ring, clock)
    rows = conn.execute("select * from signing_keys").fetchall()
    assert len(rows) == 1
    assert rows[0]["algorithm"] == "ES256" and rows[0]["retired_at"] is None
    assert ECKey.import_key(rows[0]["public_jwk"]).thumbprint() == rows[0]["kid"]


def test_the_private_part_is_stored_sealed_and_opens_only_with_the_right_secret(ring, clock, conn):
    issue(ring, clock)
    row = conn.execute("select * from signing_keys").fetchone()
    kid, stored = row["kid"], bytes(row["private_key"])
    raw = open_private_key(SECRET, kid, stored)
    scalar = load_der_private_key(raw, password=None).private_numbers().private_value
    assert scalar.to_bytes(32, "big") not in stored and raw not in stored
    assert _b64(raw) not in str(row)
    # What opens is the private half of the published public key.
    _, key = signing_key(conn)
    public = {name: row["public_jwk"][name] for name in ("kty", "crv", "x", "y")}
    assert key.as_dict(private=False) == public
    with pytest.raises(ConfigurationError, match="cannot be opened"):
        open_private_key(SECRET + "!", kid, stored)
    with pytest.raises(ConfigurationError):  # the kid is bound to it as well
        open_private_key(SECRET, "another-kid", stored)
    flipped = stored[:-1] + bytes([stored[-1] ^ 1])
    with pytest.raises(ConfigurationError):
        open_private_key(SECRET, kid, flipped)


def test_a_ring_with_the_wrong_secret_checks_tokens_but_will_not_sign(ring, clock, conn):
    token = issue(ring, clock)
    wrong = KeyRing(lambda: nullcontext(conn), "another secret entirely, also long", clock=clock)
    assert verify(wrong, token)["sub"] == str(USER)
    with pytest.raises(ConfigurationError, match="identity keys rotate"):
        issue(wrong, clock)


def test_each_key_has_its_own_nonce(ring, clock, conn):
    issue(ring, clock)
    rotate_signing_key(conn, SECRET, access_token_seconds=900)
    nonces = {bytes(row["private_key"][:12]) for row in conn.execute("select * from signing_keys")}
    assert len(nonces) == 2


def test_after_a_rotation_the_new_key_is_published_at_once_and_signs_later(ring, clock, conn):
    """A site may hold the key set for its max-age: a token must never name a kid that a
    set fetched before the rotation lacks."""
    old_token = issue(ring, clock)
    old_kid = header_of(old_token)["kid"]
    rotation = rotate_signing_key(conn, SECRET, access_token_seconds=900)
    assert rotation.retired == [old_kid] and rotation.revoked == []
    fresh = KeyRing(lambda: nullcontext(conn), SECRET, clock=clock)  # another replica

    for replica in (ring, fresh):
        clock.advance(RELOAD_SECONDS)
        assert {key["kid"] for key in replica.jwks()["keys"]} == {old_kid, rotation.kid}
        assert header_of(issue(replica, clock))["kid"] == old_kid

    clock.now = rotation.signs_from.timestamp() - 1
    assert header_of(issue(ring, clock))["kid"] == old_kid  # a second before its time
    clock.now = rotation.signs_from.timestamp()
    for replica in (ring, fresh):
        new_token = issue(replica, clock)
        assert header_of(new_token) == {"alg": "ES256", "kid": rotation.kid, "typ": "JWT"}
        assert verify(replica, new_token)
        assert verify(replica, old_token)
        assert {key["kid"] for key in replica.jwks()["keys"]} == {old_kid, rotation.kid}

    clock.advance(publish_seconds(900) + 1)
    assert [key["kid"] for key in ring.jwks()["keys"]] == [rotation.kid]
    refused(ring, old_token)


def test_the_new_key_signs_from_once_every_cached_key_set_may_hold_it(conn, ring, clock):
    issue(ring, clock)
    rotation = rotate_signing_key(conn, SECRET, access_token_seconds=900)
    row = conn.execute(
        "select created_at, signs_from from signing_keys where kid = %(kid)s",
        {"kid": rotation.kid},
    ).fetchone()
    waited = (row["signs_from"] - row["created_at"]).total_seconds()
    # A set fetched from a replica that had not read the new key yet, kept for max-age.
    assert signs_in_seconds() <= waited < signs_in_seconds() + 1
    assert signs_in_seconds() >= 300 + RELOAD_SECONDS + 30
    assert rotation.signs_from == row["signs_from"]


def test_the_retired_key_is_published_past_the_last_token_it_may_sign(conn, ring, clock):
    issue(ring, clock)
    rotate_signing_key(conn, SECRET, access_token_seconds=900)
    row = conn.execute("select * from signing_keys where retired_at is not null").fetchone()
    published = (row["publish_until"] - row["retired_at"]).total_seconds()
    # Another replica may sign with it until it reloads; those tokens live 900 s more.
    assert published == publish_seconds(900) >= 900 + RELOAD_SECONDS + 30


def test_a_rotation_now_signs_at_once(conn, clock):
    here = KeyRing(lambda: nullcontext(conn), SECRET, clock=clock)
    elsewhere = KeyRing(lambda: nullcontext(conn), SECRET, clock=clock)
    old_token = issue(here, clock)
    issue(elsewhere, clock)
    rotation = rotate_signing_key(conn, SECRET, access_token_seconds=900, at_once=True)
    fresh = KeyRing(lambda: nullcontext(conn), SECRET, clock=clock)
    token = issue(fresh, clock)
    assert header_of(token)["kid"] == rotation.kid
    assert verify(here, token)  # an unknown kid: read the keys again
    assert header_of(issue(elsewhere, clock))["kid"] != rotation.kid  # until its reload...
    clock.advance(RELOAD_SECONDS)
    assert header_of(issue(elsewhere, clock))["kid"] == rotation.kid  # ...after it
    assert verify(elsewhere, old_token)  # the old key's tokens pass until they expire


def test_revoking_the_previous_key_refuses_its_tokens_and_withdraws_it(conn, ring, clock):
    old_token = issue(ring, clock)
    old_kid = header_of(old_token)["kid"]
    assert verify(ring, old_token)  # checked once: the ring remembers the signature
    rotation = rotate_signing_key(conn, SECRET, access_token_seconds=900, revoke_previous=True)
    assert rotation.revoked == [old_kid]

    fresh = KeyRing(lambda: nullcontext(conn), SECRET, clock=clock)  # a replica reading now
    refused(fresh, old_token)
    assert [key["kid"] for key in fresh.jwks()["keys"]] == [rotation.kid]
    assert header_of(issue(fresh, clock))["kid"] == rotation.kid  # signs at once

    # A replica that read the keys just before: at most RELOAD_SECONDS later.
    clock.advance(RELOAD_SECONDS)
    refused(ring, old_token)
    assert [key["kid"] for key in ring.jwks()["keys"]] == [rotation.kid]
    assert verify(ring, issue(ring, clock))["sub"] == str(USER)


def test_revoking_withdraws_every_earlier_key_still_published(conn, ring, clock):
    """A leak of one sealed key is a leak of the database and the secret: none of the
    keys published with it is trusted any more."""
    first = issue(ring, clock)
    rotate_signing_key(conn, SECRET, access_token_seconds=900, at_once=True)
    clock.advance(RELOAD_SECONDS)
    second = issue(ring, clock)
    assert header_of(second)["kid"] != header_of(first)["kid"]
    rotation = rotate_signing_key(conn, SECRET, access_token_seconds=900, revoke_previous=True)
    assert sorted(rotation.revoked) == sorted(header_of(t)["kid"] for t in (first, second))
    clock.advance(RELOAD_SECONDS)
    refused(ring, first)
    refused(ring, second)
    assert [key["kid"] for key in ring.jwks()["keys"]] == [rotation.kid]


# --- from EdDSA to ES256 -----------------------------------------------------------------


def test_a_service_upgraded_from_eddsa_switches_to_es256_and_keeps_old_tokens_valid(conn, clock):
    legacy_kid, _ = legacy_eddsa_key(conn)
    ring = KeyRing(lambda: nullcontext(conn), SECRET, clock=clock)
    # The EdDSA key signs on until the ES256 key it schedules may be in every cached set.
    old_token = issue(ring, clock)
    assert header_of(old_token) == {"alg": "EdDSA", "kid": legacy_kid, "typ": "JWT"}
    published = {key["kid"]: key for key in ring.jwks()["keys"]}
    (new_kid,) = set(published) - {legacy_kid}
    assert published[legacy_kid]["alg"] == "EdDSA" and published[new_kid]["alg"] == "ES256"
    assert {key["use"] for key in published.values()} == {"sig"}

    issued_at = clock()
    clock.advance(signs_in_seconds() + 1)
    new_token = issue(ring, clock)
    assert header_of(new_token) == {"alg": "ES256", "kid": new_kid, "typ": "JWT"}
    assert verify(ring, new_token)
    assert verify(ring, old_token)  # until it expires

    clock.now = issued_at + 900 + LEEWAY_SECONDS + 1
    refused(ring, old_token, EXPIRED)
    clock.advance(publish_seconds(900))
    assert [key["kid"] for key in ring.jwks()["keys"]] == [new_kid]
    refused(ring, old_token)


def test_an_eddsa_key_verifies_only_eddsa_and_an_es256_key_only_es256(conn, ring, clock):
    """The kid's key decides the algorithm: each token below is signed by a real private
    key of ours, but the other one than its header's pairing of kid and alg asks for."""
    legacy_kid, _ = legacy_eddsa_key(conn)
    legacy_row = conn.execute(
        "select private_key from signing_keys where kid = %(kid)s", {"kid": legacy_kid}
    ).fetchone()
    raw = open_private_key(SECRET, legacy_kid, legacy_row["private_key"])
    legacy_private = OKPKey.import_key(Ed25519PrivateKey.from_private_bytes(raw))
    issue(ring, clock)  # schedules the ES256 key
    es_kid, es_private = signing_key(conn)
    payload = json.dumps(good_claims(clock)).encode()

    def token(alg, kid, key, registry):
        return jws.serialize_compact(
            {"alg": alg, "kid": kid, "typ": "JWT"}, payload, key, registry=registry
        )

    # Each pairing that is right passes, so each refusal is for its pairing only.
    assert verify(ring, token("EdDSA", legacy_kid, legacy_private, EDDSA))
    assert verify(ring, token("ES256", es_kid, es_private, ES256))
    refused(ring, token("EdDSA", es_kid, legacy_private, EDDSA))
    refused(ring, token("ES256", legacy_kid, es_private, ES256))


def test_unknown_kids_make_the_ring_read_the_keys_at_most_every_few_seconds(conn, clock):
    reads = []

    @contextmanager
    def counting():
        reads.append(1)
        yield conn

    ring = KeyRing(counting, SECRET, clock=clock)
    token = issue(ring, clock)
    before = len(reads)
    stranger = ECKey.generate_key("P-256")
    payload = json.dumps(good_claims(clock)).encode()
    for n in range(50):
        header = {"alg": "ES256", "kid": f"made-up-{n}", "typ": "JWT"}
        refused(ring, jws.serialize_compact(header, payload, stranger, registry=ES256))
    assert len(reads) - before == 1
    clock.advance(UNKNOWN_KID_RELOAD_SECONDS)
    refused(ring, jws.serialize_compact(header, payload, stranger, registry=ES256))
    assert len(reads) - before == 2
    assert verify(ring, token)  # a known kid costs no read
    assert len(reads) - before == 2


@pytest.mark.committing
def test_two_processes_making_the_first_key_at_once_make_one(database_url, committing_db):
    start = threading.Barrier(4)

    def first_token(_):
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as own:
            ring = KeyRing(lambda: nullcontext(own), SECRET)
            start.wait()
            token, _ = issue_access_token(ring, user_id=USER, site=SITE, issuer=ISSUER)
            return header_of(token)["kid"]

    with ThreadPoolExecutor(4) as pool:
        kids = set(pool.map(first_token, range(4)))
    rows = committing_db.execute("select kid from signing_keys").fetchall()
    assert [row["kid"] for row in rows] == list(kids) and len(kids) == 1


@pytest.mark.committing
def test_two_rotations_at_once_leave_one_signing_key(database_url, committing_db):
    start = threading.Barrier(3)

    def rotate(_):
        with psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as own:
            start.wait()
            return rotate_signing_key(own, SECRET, access_token_seconds=900)

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(rotate, range(3)))
    rows = committing_db.execute("select kid, retired_at from signing_keys").fetchall()
    assert len(rows) == 3
    assert sum(row["retired_at"] is None for row in rows) == 1
    assert sorted(kid for rotation in results for kid in rotation.retired) == sorted(
        row["kid"] for row in rows if row["retired_at"] is not None
    )
