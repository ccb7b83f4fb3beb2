"""Access tokens: EdDSA-signed JWTs, and the keys that sign them (sealed, rotated, shared)."""

import json
import os
import secrets
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from uuid import UUID

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from joserfc import jws, jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwa import EdDSAAlgorithm
from joserfc.jwk import OKPKey
from joserfc.jws import JWSRegistry

from identity.errors import ConfigurationError, Unauthenticated
from identity.store import signing_keys as store

ALGORITHM = "EdDSA"
JWT_TYPE = "JWT"
# Seconds of clock difference between replicas (and the sites) a token's times may have.
LEEWAY_SECONDS = 30
# A ring reads the keys again this often, so a key rotated elsewhere signs here within
# this time; and, at most this often, when it meets a kid it does not know.
RELOAD_SECONDS = 60.0
UNKNOWN_KID_RELOAD_SECONDS = 5.0
# Longer is no token of ours; refused before it is parsed.
MAX_TOKEN_LENGTH = 4096

INVALID = "this access token is not valid"
EXPIRED = "this access token has expired"


class _EdDSA(EdDSAAlgorithm):
    # joserfc warns on every use of "EdDSA", which RFC 9864 deprecates for the
    # fully-specified "Ed25519". The keys here are Ed25519 only (checked on loading), so
    # the name is not ambiguous, and it is the one the sites' JWT libraries know.
    security_warning = None


class _Registry(JWSRegistry):
    """EdDSA and nothing else: "none", HS256 with the public key as its secret, RS256 and
    every other algorithm are unknown here, whatever a token's header says."""

    algorithms = {ALGORITHM: _EdDSA()}
    recommended = [ALGORITHM]


_REGISTRY = _Registry(algorithms=[ALGORITHM])
_HEADER = frozenset({"alg", "kid", "typ"})


def publish_seconds(access_token_seconds: int) -> int:
    """How long a retired key stays published: until the last token it may have signed
    has expired. A replica that has not reloaded yet may sign with it for up to
    RELOAD_SECONDS after it was retired."""
    return access_token_seconds + int(RELOAD_SECONDS) + LEEWAY_SECONDS


# --- the keys at rest ------------------------------------------------------------------

_SEAL_INFO = b"identity: signing keys at rest, AES-256-GCM, v1"
_NONCE_BYTES = 12


def _sealer(secret_key: str) -> AESGCM:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(
        secret_key.encode("utf-8")
    )
    return AESGCM(derived)


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
    private = Ed25519PrivateKey.generate()
    key = OKPKey.import_key(private)
    kid = key.thumbprint()  # RFC 7638: the same public key always has the same kid
    raw = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return {
        "kid": kid,
        "algorithm": ALGORITHM,
        "public_jwk": key.as_dict(private=False, kid=kid, alg=ALGORITHM, use="sig"),
        "private_key": seal_private_key(secret_key, kid, raw),
    }


def ensure_signing_key(conn: psycopg.Connection, secret_key: str) -> None:
    """Make the first signing key if there is none; two processes doing this at once make
    one between them."""
    with conn.transaction():
        store.lock(conn)
        if not store.has_signing_key(conn):
            store.insert_key(conn, **_new_key_row(secret_key))


def rotate_signing_key(
    conn: psycopg.Connection, secret_key: str, *, access_token_seconds: int
) -> tuple[str, str | None]:
    """Make a new signing key and retire the one before it, which stays published until
    every token it signed has expired. The new kid and the retired one (None: first key)."""
    row = _new_key_row(secret_key)
    with conn.transaction():
        store.lock(conn)
        retired = store.retire_signing_key(conn, publish_seconds(access_token_seconds))
        store.insert_key(conn, **row)
    return row["kid"], retired


def list_signing_keys(conn: psycopg.Connection) -> list[dict]:
    """Every key: kid, algorithm, created, retired, published until. Never a private half."""
    return store.list_keys(conn)


# --- the ring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loaded:
    """The keys as read at one moment: every published public key, by kid, with the time
    it stops being published (None: it signs), and the signing key's sealed private half."""

    at: float
    public: dict[str, tuple[OKPKey, float | None]]
    signing_kid: str | None
    signing_sealed: bytes | None


class KeyRing:
    """The signing keys as this process knows them, read from the database through
    `connection()` (a context manager that lends a connection: the app's pool, or a
    test's connection) and read again every RELOAD_SECONDS, and when a token names a kid
    it does not know (at most every UNKNOWN_KID_RELOAD_SECONDS), so a key rotated on one
    replica signs and is accepted on all of them.

    Checking a token needs only the public keys; signing opens the private half of the
    newest key with `secret_key`, once per key.
    """

    def __init__(
        self,
        connection: Callable[[], AbstractContextManager[psycopg.Connection]],
        secret_key: str,
        *,
        clock: Callable[[], float] = time.time,
    ):
        self._connection = connection
        self._secret_key = secret_key
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None
        self._unknown_kid_reload_at = float("-inf")
        self._signing: tuple[str, OKPKey] | None = None

    def sign(self, claims: dict) -> str:
        """`claims` as a compact JWT signed by the newest key, made first if there is none."""
        kid, key = self._signing_key(self._with_signing_key())
        header = {"alg": ALGORITHM, "kid": kid, "typ": JWT_TYPE}
        return jwt.encode(header, dict(claims), key, registry=_REGISTRY)

    def verify(
        self, token: str, *, audience: str | None, issuer: str, leeway: int = LEEWAY_SECONDS
    ) -> dict:
        """The claims of `token` if it is one of ours and valid now: signed by a published
        key with EdDSA, typ JWT, from `issuer`, for `audience` (any, when None), with sub,
        iat and an exp not past. Anything else raises Unauthenticated, saying only that
        the token is not valid, or has expired."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated(INVALID)
        try:
            signed = jws.extract_compact(token.encode("ascii"), registry=_REGISTRY)
        except (JoseError, ValueError):
            raise Unauthenticated(INVALID) from None
        header = signed.headers()
        kid = header.get("kid")
        if (
            not _HEADER.issuperset(header)
            or header.get("alg") != ALGORITHM
            or header.get("typ") != JWT_TYPE
            or not isinstance(kid, str)
        ):
            raise Unauthenticated(INVALID)
        key = self._public_key(kid)
        try:
            if key is None or not jws.validate_compact(signed, key, registry=_REGISTRY):
                raise Unauthenticated(INVALID)
            claims = json.loads(signed.payload)
            if not isinstance(claims, dict):
                raise Unauthenticated(INVALID)
            _claims_registry(self._clock(), leeway, issuer, audience).validate(claims)
        except ExpiredTokenError:
            raise Unauthenticated(EXPIRED) from None
        except (JoseError, ValueError):
            raise Unauthenticated(INVALID) from None
        return claims

    def jwks(self) -> dict:
        """The JWK Set of every published key: the signing key and the retired ones whose
        tokens may still be live. Makes the first key if there is none, so the set a site
        fetches before the first token is signed already holds the key that signs it."""
        loaded = self._with_signing_key()
        now = self._clock()
        return {
            "keys": [
                key.as_dict(private=False)
                for key, until in loaded.public.values()
                if until is None or until > now
            ]
        }

    def _public_key(self, kid: str) -> OKPKey | None:
        loaded = self._current()
        if kid not in loaded.public:
            now = self._clock()
            with self._lock:
                may_reload = now >= self._unknown_kid_reload_at
                if may_reload:
                    self._unknown_kid_reload_at = now + UNKNOWN_KID_RELOAD_SECONDS
            if may_reload:
                loaded = self._reload()
        key, until = loaded.public.get(kid, (None, None))
        if until is not None and until <= self._clock():
            return None
        return key

    def _with_signing_key(self) -> _Loaded:
        loaded = self._current()
        if loaded.signing_kid is None:
            with self._connection() as conn:
                ensure_signing_key(conn, self._secret_key)
            loaded = self._reload()
        return loaded

    def _signing_key(self, loaded: _Loaded) -> tuple[str, OKPKey]:
        signing = self._signing
        if signing is None or signing[0] != loaded.signing_kid:
            raw = open_private_key(self._secret_key, loaded.signing_kid, loaded.signing_sealed)
            key = OKPKey.import_key(Ed25519PrivateKey.from_private_bytes(raw))
            signing = self._signing = (loaded.signing_kid, key)
        return signing

    def _current(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None or not 0 <= self._clock() - loaded.at < RELOAD_SECONDS:
            loaded = self._reload()
        return loaded

    def _reload(self) -> _Loaded:
        with self._connection() as conn:
            rows = store.published_keys(conn)
        public, signing = {}, None
        for row in rows:
            key = OKPKey.import_key(row["public_jwk"])
            if row["algorithm"] != ALGORITHM or key.curve_name != "Ed25519":
                continue
            until = row["publish_until"].timestamp() if row["publish_until"] else None
            public[row["kid"]] = (key, until)
            if row["retired_at"] is None:
                signing = row
        loaded = _Loaded(
            at=self._clock(),
            public=public,
            signing_kid=None if signing is None else signing["kid"],
            signing_sealed=None if signing is None else bytes(signing["private_key"]),
        )
        self._loaded = loaded
        return loaded


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
