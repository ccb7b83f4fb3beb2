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
from joserfc import jws
from joserfc.jwk import OKPKey
from psycopg.rows import dict_row

from identity.errors import ConfigurationError, Unauthenticated
from identity.security.access_tokens import (
    _REGISTRY,
    EXPIRED,
    INVALID,
    RELOAD_SECONDS,
    UNKNOWN_KID_RELOAD_SECONDS,
    KeyRing,
    issue_access_token,
    open_private_key,
    publish_seconds,
    rotate_signing_key,
)

SECRET = "a-test-secret-of-more-than-32-characters"
ISSUER = "https://identity.example.com"
SITE = "copernica.com"
USER = uuid4()


class Clock:
    """Wall time that only moves when a test moves it."""

    def __init__(self):
        self.now = float(int(time.time()))

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


def signing_key(conn) -> tuple[str, OKPKey]:
    """The service's own signing key, for tokens it would never make."""
    row = conn.execute("select * from signing_keys where retired_at is null").fetchone()
    raw = open_private_key(SECRET, row["kid"], row["private_key"])
    return row["kid"], OKPKey.import_key({**row["public_jwk"], "d": _b64(raw)})


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
    header = {"alg": "EdDSA", "kid": kid, "typ": "JWT", **header_changes}
    header = {name: value for name, value in header.items() if value is not None}
    signing_input = f"{_segment(header)}.{_segment(claims)}"
    return f"{signing_input}.{_b64(key.private_key.sign(signing_input.encode()))}"


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
    assert header_of(token) == {"alg": "EdDSA", "kid": kid, "typ": "JWT"}
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


@pytest.mark.parametrize("alg", ["RS256", "ES256", "Ed25519", "EdDSA "])
def test_any_other_algorithm_is_refused(ring, clock, conn, alg):
    issue(ring, clock)
    kid, _ = signing_key(conn)
    header = _segment({"alg": alg, "kid": kid, "typ": "JWT"})
    refused(ring, f"{header}.{_segment(good_claims(clock))}.{_b64(b'x' * 64)}")


def test_a_token_signed_by_another_key_is_refused(ring, clock, conn):
    issue(ring, clock)
    kid, _ = signing_key(conn)
    stranger = OKPKey.generate_key("Ed25519")
    payload = json.dumps(good_claims(clock)).encode()
    for header_kid in (kid, stranger.thumbprint(), "", "../../etc/passwd"):
        header = {"alg": "EdDSA", "kid": header_kid, "typ": "JWT"}
        refused(ring, jws.serialize_compact(header, payload, stranger, registry=_REGISTRY))


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
    assert rows[0]["algorithm"] == "EdDSA" and rows[0]["retired_at"] is None
    assert OKPKey.import_key(rows[0]["public_jwk"]).thumbprint() == rows[0]["kid"]


def test_the_private_part_is_stored_sealed_and_opens_only_with_the_right_secret(ring, clock, conn):
    issue(ring, clock)
    row = conn.execute("select * from signing_keys").fetchone()
    kid, stored = row["kid"], bytes(row["private_key"])
    raw = open_private_key(SECRET, kid, stored)
    assert len(raw) == 32 and raw not in stored and _b64(raw) not in str(row)
    # What opens is the private half of the published public key.
    _, key = signing_key(conn)
    assert key.as_dict(private=False) == row["public_jwk"]
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


def test_after_a_rotation_old_tokens_pass_until_the_old_key_is_withdrawn(ring, clock, conn):
    old_token = issue(ring, clock)
    old_kid = header_of(old_token)["kid"]
    new_kid, retired = rotate_signing_key(conn, SECRET, access_token_seconds=900)
    assert retired == old_kid

    clock.advance(RELOAD_SECONDS)  # the ring reads the keys again
    new_token = issue(ring, clock)
    assert header_of(new_token)["kid"] == new_kid
    assert verify(ring, new_token)
    assert {key["kid"] for key in ring.jwks()["keys"]} == {old_kid, new_kid}
    assert verify(ring, old_token)

    clock.advance(publish_seconds(900) - RELOAD_SECONDS + 1)
    assert [key["kid"] for key in ring.jwks()["keys"]] == [new_kid]
    refused(ring, old_token)
    assert verify(ring, issue(ring, clock))["sub"] == str(USER)


def test_the_retired_key_is_published_past_the_last_token_it_may_sign(conn, ring, clock):
    issue(ring, clock)
    rotate_signing_key(conn, SECRET, access_token_seconds=900)
    row = conn.execute("select * from signing_keys where retired_at is not null").fetchone()
    published = (row["publish_until"] - row["retired_at"]).total_seconds()
    # Another replica may sign with it until it reloads; those tokens live 900 s more.
    assert published == publish_seconds(900) >= 900 + RELOAD_SECONDS + 30


def test_a_key_rotated_elsewhere_is_accepted_at_once_and_signs_within_the_reload(conn, clock):
    here = KeyRing(lambda: nullcontext(conn), SECRET, clock=clock)
    elsewhere = KeyRing(lambda: nullcontext(conn), SECRET, clock=clock)
    issue(here, clock)
    issue(elsewhere, clock)
    new_kid, _ = rotate_signing_key(conn, SECRET, access_token_seconds=900)
    fresh = KeyRing(lambda: nullcontext(conn), SECRET, clock=clock)
    token = issue(fresh, clock)
    assert header_of(token)["kid"] == new_kid
    assert verify(here, token)  # an unknown kid: read the keys again
    assert header_of(issue(elsewhere, clock))["kid"] != new_kid  # until its reload...
    clock.advance(RELOAD_SECONDS)
    assert header_of(issue(elsewhere, clock))["kid"] == new_kid  # ...after it


def test_unknown_kids_make_the_ring_read_the_keys_at_most_every_few_seconds(conn, clock):
    reads = []

    @contextmanager
    def counting():
        reads.append(1)
        yield conn

    ring = KeyRing(counting, SECRET, clock=clock)
    token = issue(ring, clock)
    before = len(reads)
    stranger = OKPKey.generate_key("Ed25519")
    payload = json.dumps(good_claims(clock)).encode()
    for n in range(50):
        header = {"alg": "EdDSA", "kid": f"made-up-{n}", "typ": "JWT"}
        refused(ring, jws.serialize_compact(header, payload, stranger, registry=_REGISTRY))
    assert len(reads) - before == 1
    clock.advance(UNKNOWN_KID_RELOAD_SECONDS)
    refused(ring, jws.serialize_compact(header, payload, stranger, registry=_REGISTRY))
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
    assert sorted(retired for _, retired in results if retired) == sorted(
        row["kid"] for row in rows if row["retired_at"] is not None
    )
