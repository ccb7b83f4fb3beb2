"""Unsubscribe tokens: compact, URL-safe, signed names of one person and one list.

A token is 33 bytes in base64url (44 characters, no padding, so no spare bits a
changed character could hide in): the key id (1 byte), the list's number (1 byte), the
person's UUID (16 bytes), then the first 15 bytes (120 bits) of HMAC-SHA256 over those
18 bytes. No address in it, no expiry: a link must work for as long as a mail sits in
an inbox.

Each key id has its own key, derived from IDENTITY_SECRET_KEY and the id with HKDF
(identity.security.derived_keys: the label is fixed, or every link mailed would break).
New tokens are signed with the current id (IDENTITY_UNSUBSCRIBE_KEY_ID); every id from 1
up to it still verifies, so raising it rotates the key and old links keep working.
Changing IDENTITY_SECRET_KEY itself ends every link ever sent.

For the export, `sign_many` signs a whole batch of people at once: 33 bytes is a
multiple of 3, so the base64 of the batch's tokens laid end to end is their 44-character
texts laid end to end, made in one call.
"""

import base64
import binascii
import hashlib
import hmac
import re
from uuid import UUID

from identity.security.derived_keys import derived_key, unsubscribe_tokens

TOKEN_LENGTH = 44
MAC_BYTES = 15
_PAYLOAD_BYTES = 18
_SHAPE = re.compile(r"[A-Za-z0-9_-]{44}")
_SHA256_BLOCK = 64


class UnsubscribeTokens:
    """Signs with the current key id and verifies with any id from 1 up to it."""

    def __init__(self, secret_key: str, current_kid: int = 1):
        if not 1 <= current_kid <= 255:
            raise ValueError("an unsubscribe key id is 1 to 255")
        self.current_kid = current_kid
        self._keys = {
            kid: derived_key(secret_key, unsubscribe_tokens(kid))
            for kid in range(1, current_kid + 1)
        }
        self._signing_key = self._keys[current_kid]
        # HMAC's inner and outer hash states after the key's pads (RFC 2104): the bulk
        # signing copies them instead of keying HMAC again for every token.
        padded = self._signing_key.ljust(_SHA256_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in padded))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in padded))

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

    def sign_many(self, user_ids: bytes, list_id: int) -> bytes:
        """The tokens of many people for one list, 44 ASCII bytes each, end to end:
        `user_ids` is their UUIDs' 16 bytes each, end to end."""
        prefix = bytes((self.current_kid, list_id))
        inner, outer = self._inner, self._outer
        raw = []
        for i in range(0, len(user_ids), 16):
            payload = prefix + user_ids[i : i + 16]
            mac = inner.copy()
            mac.update(payload)
            whole = outer.copy()
            whole.update(mac.digest())
            raw.append(payload + whole.digest()[:MAC_BYTES])
        return base64.urlsafe_b64encode(b"".join(raw))
