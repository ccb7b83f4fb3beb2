"""Random secrets handed out once (site keys, mailed links, refresh tokens, confirmation
links) and the hash under which each is kept: the database never holds one in clear."""

import hashlib
import secrets


def new_secret(prefix: str = "") -> str:
    """A fresh secret: 256 random bits, URL-safe, after `prefix`."""
    return prefix + secrets.token_urlsafe(32)


def secret_hash(secret: str) -> bytes:
    """What is stored and looked up in place of the secret. A presented secret may hold
    anything a JSON string can, lone surrogates too: they hash, and match nothing."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()
