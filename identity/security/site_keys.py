"""Site keys: random bearer secrets, of which only a hash is stored."""

import hashlib
import secrets

KEY_PREFIX = "idsk_"


def new_site_key() -> str:
    """A fresh key: 256 random bits, URL-safe, recognisable by its prefix."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def site_key_hash(key: str) -> bytes:
    """What is stored and looked up in place of the key itself."""
    return hashlib.sha256(key.encode("utf-8")).digest()


def site_key_label(key: str) -> str:
    """The part of a key that may be shown in listings and logs."""
    return key[: len(KEY_PREFIX) + 6]
