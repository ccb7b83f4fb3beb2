"""The keys the service's purposes use, each derived from IDENTITY_SECRET_KEY with
HKDF-SHA256 (RFC 5869) and a label of its own: no two purposes share a key, none uses
the secret itself, and a key that leaks (a throttle's HMAC, say) tells nothing of the
others or of the secret.

The labels are fixed for good. What a key made stays in the database and in mails
already sent: change a label and the signing keys sealed under it no longer open, and
every unsubscribe link ever mailed stops working. A new purpose gets a new label here;
docs/security.md lists them all and says how to rotate the secret.
"""

import functools

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# The private halves of the access tokens' signing keys at rest (AES-256-GCM).
SIGNING_KEYS_AT_REST = b"identity: signing keys at rest, AES-256-GCM, v1"
# Failed-login counts per address: the throttle's name is an HMAC of the address key,
# so the table holds no address.
LOGIN_THROTTLES = b"identity: login throttles, HMAC-SHA256, v1"


def unsubscribe_tokens(key_id: int) -> bytes:
    """The label of the unsubscribe tokens' HMAC key of one key id (1-255)."""
    return b"identity: unsubscribe tokens, HMAC-SHA256, kid %d" % key_id


@functools.lru_cache(maxsize=512)
def derived_key(secret_key: str, label: bytes) -> bytes:
    """The 32-byte key of the purpose `label` under `secret_key` (IDENTITY_SECRET_KEY).
    Kept once made: a throttle's name is asked for at every login."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(
        secret_key.encode("utf-8")
    )
