"""Access tokens: ES256-signed JWTs (EdDSA ones of older keys still checked), and the keys
that sign them (sealed, scheduled, rotated, revoked, shared by every replica)."""

import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
)
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwa import EdDSAAlgorithm, ESAlgorithm
from joserfc.jwk import ECKey, Key, OKPKey, import_key
from joserfc.jws import JWSRegistry

from identity.errors import ConfigurationError, Unauthenticated
from identity.security.derived_keys import SIGNING_KEYS_AT_REST, derived_key
from identity.store import signing_keys as store

# New keys sign with ES256 (ECDSA on P-256, RFC 7518): RFC 9864 deprecates "EdDSA", and of
# the two algorithms it leaves for these keys, ES256 is the one every verifier of the
# sites takes today (PyJWT with cryptography, node `jose`, PHP firebase/php-jwt, which
# knows "EdDSA" and "ES256" but not "Ed25519"). Keys made before stay EdDSA (Ed25519)
# until the tokens they signed have expired.
ALGORITHM = "ES256"
LEGACY_ALGORITHM = "EdDSA"
JWT_TYPE = "JWT"
# Seconds of clock difference between replicas (and the sites) a token's times may have.
LEEWAY_SECONDS = 30
# A ring reads the keys again this often (a few rows: one short query), so a key revoked
# or rotated elsewhere is known on every replica within this time; and, at most every
# UNKNOWN_KID_RELOAD_SECONDS, when it meets a kid it does not know.
RELOAD_SECONDS = 5.0
UNKNOWN_KID_RELOAD_SECONDS = 1.0
# How long a site may keep the key set (its Cache-Control max-age).
JWKS_MAX_AGE_SECONDS = 300
# Longer is no token of ours; refused before it is parsed.
MAX_TOKEN_LENGTH = 4096

INVALID = "this access token is not valid"
EXPIRED = "this access token has expired"
# Signatures found good, per process, with the kid that made them (then it forgets them
# all and starts again): a site sends the same token with every request of a person.
_CHECKED_TOKENS = 10_000


class _EdDSA(EdDSAAlgorithm):
    # joserfc warns on every use of "EdDSA", which RFC 9864 deprecates for the
    # fully-specified "Ed25519". Only the keys made before ES256 use it, all Ed25519
    # (checked on loading), so the name is not ambiguous here.
    security_warning = None


class _Registry(JWSRegistry):
    """One algorithm and nothing else: "none", HS256 with the public key as its secret and
    every algorithm but this registry's are unknown to it, whatever a token's header says."""

    def __init__(self, algorithm):
        super().__init__(algorithms=[algorithm.name])
        self.algorithms = {algorithm.name: algorithm}
        self.recommended = [algorithm.name]


# A token is checked with the registry of its key's algorithm: a kid of an ES256 key
# verifies only ES256, one of an EdDSA key only EdDSA.
_REGISTRIES = {
    ALGORITHM: _Registry(ESAlgorithm("ES256", "P-256", 256, True)),
    LEGACY_ALGORITHM: _Registry(_EdDSA()),
}
_CURVES = {ALGORITHM: "P-256", LEGACY_ALGORITHM: "Ed25519"}
_HEADER = frozenset({"alg", "kid", "typ"})


def publish_seconds(access_token_seconds: int) -> int:
    """How long a retired key stays published: until the last token it may have signed
    has expired. A replica that has not reloaded yet may sign with it for up to
    RELOAD_SECONDS after it was retired."""
    return access_token_seconds + int(RELOAD_SECONDS) + LEEWAY_SECONDS


def signs_in_seconds() -> int:
    """How long after a rotation the new key starts signing: a site may have fetched the
    key set just before it, from a replica that had not read the new key yet (up to
    RELOAD_SECONDS), and keep that set JWKS_MAX_AGE_SECONDS; clocks differ by up to
    LEEWAY_SECONDS. After that every cached set holds the new key."""
    return JWKS_MAX_AGE_SECONDS + int(RELOAD_SECONDS) + LEEWAY_SECONDS


# --- the keys at rest ------------------------------------------------------------------

_NONCE_BYTES = 12


def _sealer(secret_key: str) -> AESGCM:
    return AESGCM(derived_key(secret_key, SIGNING_KEYS_AT_REST))


def seal_private_key(secret_key: str, kid: str, raw: bytes) -> bytes:
    """The private key as stored: a fresh nonce, then the ciphertext bound to `kid`."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + _sealer(secret_key).encrypt(nonce, raw, kid.encode("utf-8"))


def open_private_key(secret_key: str, kid: str, sealed: bytes) -> bytes:
    """The raw private key; ConfigurationError when this secret (or this kid) did not seal it."""
    sealed = bytes(sealed)
    try:
        return _sealer(secret_key).decrypt(
            sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], kid.encode("utf-8")
        )
    except InvalidTag:
        raise ConfigurationError(
            f"signing key {kid} cannot be opened with this IDENTITY_SECRET_KEY; if the secret"
            " was changed on purpose, `identity keys rotate` makes a key that can"
        ) from None


def _new_key_row(secret_key: str) -> dict:
    private = ec.generate_private_key(ec.SECP256R1())
    key = ECKey.import_key(private)
    kid = key.thumbprint()  # RFC 7638: the same public key always has the same kid
    raw = private.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
    return {
        "kid": kid,
        "algorithm": ALGORITHM,
        "public_jwk": key.as_dict(private=False, kid=kid, alg=ALGORITHM, use="sig"),
        "private_key": seal_private_key(secret_key, kid, raw),
    }


def _private_key(algorithm: str, raw: bytes) -> Key:
    """The private half as joserfc signs with it: stored as PKCS#8 DER for ES256, as the
    raw 32 bytes for the Ed25519 keys made before."""
    if algorithm == ALGORITHM:
        return ECKey.import_key(load_der_private_key(raw, password=None))
    return OKPKey.import_key(Ed25519PrivateKey.from_private_bytes(raw))


def ensure_signing_key(
    conn: psycopg.Connection, secret_key: str, *, access_token_seconds: int = 900
) -> None:
    """Make the first signing key if there is none, signing at once; and when the newest
    key is an EdDSA one (made before ES256), schedule an ES256 key as `identity keys
    rotate` does, so a service upgraded in place switches without an operator. Two
    processes doing this at once make one key between them."""
    with conn.transaction():
        now = store.lock(conn)
        newest = store.newest_key_algorithm(conn)
        if newest == ALGORITHM:
            return
        if newest is None:
            store.insert_key(conn, **_new_key_row(secret_key), signs_from=now)
            return
        switch = now + timedelta(seconds=signs_in_seconds())
        store.retire_signing_keys(conn, switch, publish_seconds(access_token_seconds))
        store.insert_key(conn, **_new_key_row(secret_key), signs_from=switch)


@dataclass(frozen=True)
class Rotation:
    """What a rotation did: the new kid and when it starts signing; the keys it retired
    (they sign until then and stay published until their tokens expire) and those it
    revoked (withdrawn at once)."""

    kid: str
    signs_from: datetime
    retired: list[str]
    revoked: list[str]


def rotate_signing_key(
    conn: psycopg.Connection,
    secret_key: str,
    *,
    access_token_seconds: int,
    at_once: bool = False,
    revoke_previous: bool = False,
) -> Rotation:
    """Make a new key, published at once. It signs after `signs_in_seconds()`, when every
    cached key set holds it, and the key before it signs until then; with `at_once`, it
    signs now (a site holding an older set fetches the set again on meeting its kid).
    With `revoke_previous` (a leaked key; implies `at_once`) every other key still
    published is revoked: its tokens are refused, and it leaves the key set."""
    row = _new_key_row(secret_key)
    delay = 0 if at_once or revoke_previous else signs_in_seconds()
    with conn.transaction():
        switch = store.lock(conn) + timedelta(seconds=delay)
        retired = store.retire_signing_keys(conn, switch, publish_seconds(access_token_seconds))
        revoked = store.revoke_published_keys(conn) if revoke_previous else []
        store.insert_key(conn, **row, signs_from=switch)
    return Rotation(row["kid"], switch, retired, revoked)


def list_signing_keys(conn: psycopg.Connection) -> list[dict]:
    """Every key: kid, algorithm, created, signs from, retired, published until, revoked.
    Never a private half."""
    return store.list_keys(conn)


# --- the ring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Published:
    """A published key as read: its public half and algorithm, when it signs from, when
    it is retired and stops being published (None: not yet known), its sealed private
    half."""

    kid: str
    key: Key
    algorithm: str
    signs_from: float
    retired_at: float | None
    publish_until: float | None
    sealed: bytes

    def published_at(self, now: float) -> bool:
        return self.publish_until is None or self.publish_until > now


@dataclass(frozen=True)
class _Loaded:
    """The keys as read at one moment, by kid; and whether a key must be made first (there
    is none, or the newest is EdDSA)."""

    at: float
    keys: dict[str, _Published]
    needs_key: bool

    def signer(self, now: float) -> _Published | None:
        """The key that signs at `now`: of those not retired by then, the one that started
        signing last; the first to start, when none has yet (a clock a little behind the
        database's, just after the first key was made)."""
        live = sorted(
            (key for key in self.keys.values() if key.retired_at is None or key.retired_at > now),
            key=lambda key: key.signs_from,
        )
        started = [key for key in live if key.signs_from <= now]
        return started[-1] if started else (live[0] if live else None)


class KeyRing:
    """The signing keys as this process knows them, read from the database through
    `connection()` (a context manager that lends a connection: the app's pool, or a
    test's connection) and read again every RELOAD_SECONDS, and when a token names a kid
    it does not know (at most every UNKNOWN_KID_RELOAD_SECONDS): a key rotated on one
    replica is accepted on all of them at once and signs on all of them from the time
    the database holds for it; a revoked key is refused everywhere within RELOAD_SECONDS.

    Checking a token needs only the public keys; signing opens the private half of the
    key that signs now with `secret_key`, once per key.
    """

    def __init__(
        self,
        connection: Callable[[], AbstractContextManager[psycopg.Connection]],
        secret_key: str,
        *,
        access_token_seconds: int = 900,
        clock: Callable[[], float] = time.time,
    ):
        self._connection = connection
        self._secret_key = secret_key
        self._access_token_seconds = access_token_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._unknown_kid_reload_at = float("-inf")
        self._signing: tuple[str, Key] | None = None
        self._checked: dict[str, tuple[str, dict]] = {}

    def sign(self, claims: dict) -> str:
        """`claims` as a compact JWT signed by the key that signs now, made first if there
        is none."""
        key = self._with_signing_key().signer(self._clock())
        header = {"alg": key.algorithm, "kid": key.kid, "typ": JWT_TYPE}
        return jwt.encode(
            header, dict(claims), self._private(key), registry=_REGISTRIES[key.algorithm]
        )

    def verify(
        self, token: str, *, audience: str | None, issuer: str, leeway: int = LEEWAY_SECONDS
    ) -> dict:
        """The claims of `token` if it is one of ours and valid now: signed by a published,
        unrevoked key with that key's own algorithm, typ JWT, from `issuer`, for `audience`
        (any, when None), with sub, iat and an exp not past. Anything else raises
        Unauthenticated, saying only that the token is not valid, or has expired.

        A signature found good is not checked again while its key stays published; the
        claims are checked every time."""
        claims = self._signed_claims(token)
        try:
            _claims_registry(self._clock(), leeway, issuer, audience).validate(claims)
        except ExpiredTokenError:
            raise Unauthenticated(EXPIRED) from None
        except (JoseError, ValueError):
            raise Unauthenticated(INVALID) from None
        return claims

    def jwks(self) -> dict:
        """The JWK Set of every published key: the one that signs, one that will after a
        rotation, and the retired ones whose tokens may still be live. Makes the first key
        if there is none, so the set a site fetches before the first token is signed
        already holds the key that signs it."""
        loaded = self._with_signing_key()
        now = self._clock()
        return {
            "keys": [
                published.key.as_dict(private=False)
                for published in loaded.keys.values()
                if published.published_at(now)
            ]
        }

    def _signed_claims(self, token: str) -> dict:
        """The claims of a token signed by a key published now, not yet checked."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated(INVALID)
        checked = self._checked.get(token)
        if checked is not None and self._published(checked[0]) is not None:
            return dict(checked[1])
        try:
            signed = jws.extract_compact(token.encode("ascii"), registry=_REGISTRIES[ALGORITHM])
        except (JoseError, ValueError):
            raise Unauthenticated(INVALID) from None
        header = signed.headers()
        kid = header.get("kid")
        if (
            not _HEADER.issuperset(header)
            or header.get("typ") != JWT_TYPE
            or not isinstance(kid, str)
        ):
            raise Unauthenticated(INVALID)
        published = self._published(kid)
        # The key decides the algorithm, never the token.
        if published is None or header.get("alg") != published.algorithm:
            raise Unauthenticated(INVALID)
        try:
            registry = _REGISTRIES[published.algorithm]
            if not jws.validate_compact(signed, published.key, registry=registry):
                raise Unauthenticated(INVALID)
            claims = json.loads(signed.payload)
        except (JoseError, ValueError):
            raise Unauthenticated(INVALID) from None
        if not isinstance(claims, dict):
            raise Unauthenticated(INVALID)
        if len(self._checked) >= _CHECKED_TOKENS:
            self._checked.clear()
        self._checked[token] = (kid, claims)
        return dict(claims)

    def _published(self, kid: str) -> _Published | None:
        """The key of `kid` if it is published now: read again first if it is unknown."""
        loaded = self._current()
        if kid not in loaded.keys:
            now = self._clock()
            with self._lock:
                may_reload = now >= self._unknown_kid_reload_at
                if may_reload:
                    self._unknown_kid_reload_at = now + UNKNOWN_KID_RELOAD_SECONDS
            if may_reload:
                loaded = self._reload()
        published = loaded.keys.get(kid)
        if published is None or not published.published_at(self._clock()):
            return None
        return published

    def _with_signing_key(self) -> _Loaded:
        loaded = self._current()
        if loaded.needs_key:
            with self._connection() as conn:
                ensure_signing_key(
                    conn, self._secret_key, access_token_seconds=self._access_token_seconds
                )
            loaded = self._reload()
        return loaded

    def _private(self, published: _Published) -> Key:
        signing = self._signing
        if signing is None or signing[0] != published.kid:
            raw = open_private_key(self._secret_key, published.kid, published.sealed)
            signing = self._signing = (published.kid, _private_key(published.algorithm, raw))
        return signing[1]

    def _current(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None or not 0 <= self._clock() - loaded.at < RELOAD_SECONDS:
            loaded = self._reload()
        return loaded

    def _reload(self) -> _Loaded:
        with self._connection() as conn:
            rows = store.published_keys(conn)
        keys, newest = {}, None
        for row in rows:
            published = _published_key(row)
            if published is None:
                continue
            keys[published.kid] = published
            if row["retired_at"] is None:
                newest = published
        loaded = _Loaded(
            at=self._clock(),
            keys=keys,
            needs_key=newest is None or newest.algorithm != ALGORITHM,
        )
        self._loaded = loaded
        return loaded


def _published_key(row: dict) -> _Published | None:
    """A stored key as the ring holds it; None for one of an algorithm or curve this
    service does not check tokens with."""
    algorithm = row["algorithm"]
    key = import_key(row["public_jwk"])
    if algorithm not in _CURVES or getattr(key, "curve_name", None) != _CURVES[algorithm]:
        return None
    return _Published(
        kid=row["kid"],
        key=key,
        algorithm=algorithm,
        signs_from=row["signs_from"].timestamp(),
        retired_at=_timestamp(row["retired_at"]),
        publish_until=_timestamp(row["publish_until"]),
        sealed=bytes(row["private_key"]),
    )


def _timestamp(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _claims_registry(now: float, leeway: int, issuer: str, audience: str | None):
    essential = {"essential": True}
    return jwt.JWTClaimsRegistry(
        now=int(now),
        leeway=leeway,
        iss={"essential": True, "value": issuer},
        sub=essential,
        iat=essential,
        exp=essential,
        aud=essential if audience is None else {"essential": True, "value": audience},
    )


def issue_access_token(
    ring: KeyRing,
    *,
    user_id: UUID | str,
    site: str,
    issuer: str,
    lifetime_seconds: int = 900,
    now: float | None = None,
    extra: dict | None = None,
) -> tuple[str, int]:
    """A signed access token for `user_id` at `site` (its audience), and its lifetime in
    seconds. `extra` adds claims, e.g. `sid`, or `act` (RFC 8693) when staff act as the
    person; it cannot replace the registered ones."""
    issued_at = int(time.time() if now is None else now)
    claims = {
        **(extra or {}),
        "iss": issuer,
        "sub": str(user_id),
        "aud": site,
        "iat": issued_at,
        "exp": issued_at + lifetime_seconds,
        "jti": secrets.token_urlsafe(16),
    }
    return ring.sign(claims), lifetime_seconds
