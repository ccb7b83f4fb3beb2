"""The second factor's secrets: TOTP (RFC 6238, through pyotp) secrets sealed at rest,
the codes they make, and the single-use recovery codes given beside them."""

import hmac
import os
import re
import secrets
from uuid import UUID

import pyotp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pyotp.utils import strings_equal

from identity.errors import ConfigurationError
from identity.security.derived_keys import RECOVERY_CODES, SECOND_FACTOR_SECRETS, derived_key

# Authenticator apps show a new code every 30 s; one step either side is taken too, for a
# phone's clock a little off and for the seconds it takes to type the code.
DRIFT_STEPS = 1
CODE = re.compile(r"[0-9]{6}")

RECOVERY_CODE_COUNT = 10
# 12 characters of 31 (59 random bits), written in three groups of four; no 0/o, 1/l/i,
# which a person typing them from paper would mix up.
_RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_totp_secret() -> str:
    """A new TOTP secret: 160 random bits in base32, as authenticator apps read it."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The `otpauth://totp/...` URI an authenticator app reads (as a QR code) to add the
    account: named by `account` (the address), under `issuer` (the site's brand)."""
    return pyotp.TOTP(secret).provisioning_uri(name=account, issuer_name=issuer)


def code_step(secret: str, code: str, now: float) -> int | None:
    """The time step whose code `code` is, within DRIFT_STEPS of `now`'s; None when it is
    none of them. Compared in constant time."""
    if not CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    step = totp.timecode(now)
    for candidate in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1):
        if strings_equal(code, totp.generate_otp(candidate)):
            return candidate
    return None


# --- the secret at rest -----------------------------------------------------------------

_NONCE_BYTES = 12


def seal_secret(secret_key: str, user_id: UUID, secret: str) -> bytes:
    """The TOTP secret as stored: a fresh nonce, then the ciphertext bound to the person
    (a sealed secret copied onto another record does not open)."""
    nonce = os.urandom(_NONCE_BYTES)
    sealer = AESGCM(derived_key(secret_key, SECOND_FACTOR_SECRETS))
    return nonce + sealer.encrypt(nonce, secret.encode("ascii"), user_id.bytes)


def open_secret(secret_key: str, user_id: UUID, sealed: bytes) -> str:
    """The TOTP secret; ConfigurationError when this IDENTITY_SECRET_KEY did not seal it."""
    sealed = bytes(sealed)
    sealer = AESGCM(derived_key(secret_key, SECOND_FACTOR_SECRETS))
    try:
        secret = sealer.decrypt(sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], user_id.bytes)
    except InvalidTag:
        raise ConfigurationError(
            "a second factor cannot be opened with this IDENTITY_SECRET_KEY: its owner must"
            " sign in with a recovery code and set it up again"
        ) from None
    return secret.decode("ascii")


# --- recovery codes ----------------------------------------------------------------------


def new_recovery_codes() -> list[str]:
    """RECOVERY_CODE_COUNT new codes, each 59 random bits: `abcd-efgh-jkmn`."""
    return [_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]


def _recovery_code() -> str:
    characters = "".join(secrets.choice(_RECOVERY_ALPHABET) for _ in range(12))
    return "-".join(characters[i : i + 4] for i in range(0, 12, 4))


def recovery_code_hash(secret_key: str, code: str) -> bytes:
    """What is stored of a recovery code, and looked up: an HMAC-SHA256 under a key of its
    own. A fast hash is enough, where a password needs argon2: a code has 59 random bits,
    so even with the key a copy of the table is 2^58 guesses a code, and without the key
    it is nothing at all; a slow hash would cost ten hashes at every setup and make a
    look-up by hash impossible. Read as typed: case, spaces and dashes do not count."""
    typed = re.sub(r"[\s-]", "", code.lower())
    return hmac.digest(
        derived_key(secret_key, RECOVERY_CODES), typed.encode("utf-8", "surrogatepass"), "sha256"
    )
