"""Site keys: random bearer secrets, of which only a hash is stored."""

import re

from identity.security.secret_tokens import new_secret, secret_hash

KEY_PREFIX = "idsk_"
_KEY_SHAPE = re.compile(r"idsk_[A-Za-z0-9_-]{43}")


def new_site_key() -> str:
    """A fresh key: 256 random bits, URL-safe, recognisable by its prefix."""
    return new_secret(KEY_PREFIX)


def site_key_hash(key: str) -> bytes:
    """What is stored and looked up in place of the key itself."""
    return secret_hash(key)


def site_key_label(key: str) -> str:
    """The part of a key that may be shown in listings and logs."""
    return key[: len(KEY_PREFIX) + 6]


def looks_like_site_key(key: str) -> bool:
    """Whether `key` has the shape of a key `new_site_key` makes: anything else is refused
    without asking the database."""
    return _KEY_SHAPE.fullmatch(key) is not None
