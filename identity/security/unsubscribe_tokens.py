"""Unsubscribe tokens: compact, URL-safe, signed names of one person and one list.

A token is 33 bytes in base64url (44 characters, no padding, so no spare bits a
changed character could hide in): the key id (1 byte), the list's number (1 byte), the
person's UUID (16 bytes), then the first 15 bytes (120 bits) of HMAC-SHA256 over those
18 bytes. No address in it, no expiry: a link must work for as long as a mail sits in
an inbox.

Each key id has its own key, derived from IDENTITY_SECRET_KEY and the id with HKDF.
New tokens are signed with the current id (IDENTITY_UNSUBSCRIBE_KEY_ID); every id from 1
up to it still verifies, so raising it rotates the key and old links keep working.
Changing IDENTITY_SECRET_KEY itself ends every link ever sent.

The export computes the same tokens inside PostgreSQL (sha256() over the key's inner and
outer pads, which is HMAC by its definition, RFC 2104), so millions of links cost the
service no Python per row; `database_pads` hands it the pads of the current key.
"""

import base64
import binascii
import hashlib
import hmac
import re
from uuid import UUID

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_LENGTH = 44
MAC_BYTES = 15
_PAYLOAD_BYTES = 18
_SHAPE = re.compile(r"[A-Za-z0-9_-]{44}")
_BLOCK = 64  # SHA-256's block size, for the HMAC pads


def _derive(secret_key: str, kid: int) -> bytes:
    info = b"identity: unsubscribe tokens, HMAC-SHA256, kid %d" % kid
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
        secret_key.encode("utf-8")
    )


class UnsubscribeTokens:
    """Signs with the current key id and verifies with any id from 1 up to it."""

    def __init__(self, secret_key: str, current_kid: int = 1):
        if not 1 <= current_kid <= 255:
            raise ValueError("an unsubscribe key id is 1 to 255")
        self.current_kid = current_kid
        self._keys = {kid: _derive(secret_key, kid) for kid in range(1, current_kid + 1)}
        self._signing_key = self._keys[current_kid]

    def sign(self, user_id: UUID, list_id: int) -> str:
        """The token naming this person and this list (a list number 1 to 255)."""
        payload = bytes((self.current_kid, list_id)) + user_id.bytes
        mac = hmac.digest(self._signing_key, payload, "sha256")[:MAC_BYTES]
        return base64.urlsafe_b64encode(payload + mac).decode("ascii")

    def verify(self, token: str) -> tuple[UUID, int] | None:
        """(person, list number) that the token names, or None for anything that is not
        a token this service signed, unchanged, with a key id it knows."""
        if len(token) != TOKEN_LENGTH or not _SHAPE.fullmatch(token):
            return None
        try:
            raw = base64.urlsafe_b64decode(token)
        except (binascii.Error, ValueError):
            return None
        key = self._keys.get(raw[0])
        if key is None:
            return None
        payload = raw[:_PAYLOAD_BYTES]
        mac = hmac.digest(key, payload, "sha256")[:MAC_BYTES]
        if not hmac.compare_digest(mac, raw[_PAYLOAD_BYTES:]):
            return None
        return UUID(bytes=payload[2:]), raw[1]

    def database_pads(self) -> dict:
        """What PostgreSQL needs to sign as `sign` does: the key id byte and the current
        key's inner and outer HMAC pads (`token_sql` shows how they are used). Passed as
        bound parameters, never written into a statement's text."""
        key = self._signing_key.ljust(_BLOCK, b"\0")
        return {
            "token_kid": bytes((self.current_kid,)),
            "token_ipad": bytes(b ^ 0x36 for b in key),
            "token_opad": bytes(b ^ 0x5C for b in key),
        }


def token_sql(list_param: str, user_id_column: str) -> str:
    """An SQL expression computing `sign(user_id, list)` from `database_pads()`
    (%(token_kid)b, %(token_ipad)b, %(token_opad)b) and a one-byte list number param."""
    payload = f"(%(token_kid)b || %({list_param})b || uuid_send({user_id_column}))"
    mac = (
        f"substring(sha256(%(token_opad)b || sha256(%(token_ipad)b || {payload})) for {MAC_BYTES})"
    )
    return f"translate(encode({payload} || {mac}, 'base64'), '+/', '-_')"


def token_digest(token: str) -> bytes:
    """A token's SHA-256, for keeping a random (confirmation) token at rest."""
    return hashlib.sha256(token.encode("utf-8")).digest()
