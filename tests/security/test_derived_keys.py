"""The keys derived from IDENTITY_SECRET_KEY, one per purpose: what was made before the
derivations moved into one module still verifies and opens (links in mails already
sent, signing keys sealed in the database), and no purpose shares a key."""

import base64
import hashlib
import hmac
from pathlib import Path
from uuid import UUID

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from identity.security import derived_keys
from identity.security.access_tokens import open_private_key
from identity.security.derived_keys import (
    LOGIN_THROTTLES,
    SIGNING_KEYS_AT_REST,
    derived_key,
    unsubscribe_tokens,
)
from identity.security.unsubscribe_tokens import UnsubscribeTokens
from identity.services.accounts.common import AccountSettings, account_throttle

SECRET = "vector secret: 9f2c71e0b4a84d3e8a5b6c7d8e9f0a1b"
PERSON = UUID("0b5f1a7e-3c2d-4e8f-9a1b-2c3d4e5f6a7b")
SECURITY_MD = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def test_unsubscribe_links_mailed_before_still_work():
    """Made by the code before identity.security.derived_keys, list 3, key ids 1 and 2."""
    tokens = UnsubscribeTokens(SECRET, 2)
    assert tokens.verify("AQMLXxp-PC1Oj5obLD1OX2p73LtFY4CAhah0F75EZyZR") == (PERSON, 3)
    assert tokens.verify("AgMLXxp-PC1Oj5obLD1OX2p7wEQ7yo_axc1i9Gzy25Or") == (PERSON, 3)
    assert tokens.sign(PERSON, 3) == "AgMLXxp-PC1Oj5obLD1OX2p7wEQ7yo_axc1i9Gzy25Or"


def test_an_unsubscribe_token_is_the_hmac_under_the_key_derived_as_before():
    """The derivation written out as it was (HKDF-SHA256, no salt, this label)."""
    for key_id in (1, 7, 255):
        info = b"identity: unsubscribe tokens, HMAC-SHA256, kid %d" % key_id
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(
            SECRET.encode()
        )
        payload = bytes((key_id, 3)) + PERSON.bytes
        mac = hmac.digest(key, payload, "sha256")[:15]
        made_before = base64.urlsafe_b64encode(payload + mac).decode()
        assert UnsubscribeTokens(SECRET, key_id).verify(made_before) == (PERSON, 3)


def test_a_signing_key_sealed_before_still_opens():
    """Sealed by the code before identity.security.derived_keys (kid "kid-1")."""
    sealed = bytes.fromhex(
        "96c5aeea98235cbdea5a0757eb8c53320963cbc84a18d90e8eb9b3bd78455212a16647b99aedf5a5"
        "66d605dabaa8ab08bd69cdb6462445eb7a5d126e"
    )
    assert open_private_key(SECRET, "kid-1", sealed) == b"\x01" * 32


def test_every_purpose_has_a_key_of_its_own_and_none_is_the_secret():
    labels = [SIGNING_KEYS_AT_REST, LOGIN_THROTTLES, *map(unsubscribe_tokens, range(1, 256))]
    keys = {derived_key(SECRET, label) for label in labels}
    assert len(keys) == len(labels)
    assert all(len(key) == 32 and SECRET.encode() not in key for key in keys)
    assert derived_key(SECRET + "!", LOGIN_THROTTLES) != derived_key(SECRET, LOGIN_THROTTLES)


def test_a_login_throttle_is_named_by_its_own_key_not_the_secret():
    settings = AccountSettings(issuer="https://id.example.com", secret_key=SECRET)
    name = account_throttle(settings, "anna@example.com")
    assert name == account_throttle(settings, "anna@example.com")
    assert "anna" not in name
    under_the_secret = hmac.new(SECRET.encode(), b"anna@example.com", hashlib.sha256)
    assert name != f"account:{under_the_secret.hexdigest()[:32]}"


def test_every_purpose_is_named_in_security_md():
    text = SECURITY_MD.read_text()
    labels = [
        value.decode()
        for name, value in vars(derived_keys).items()
        if name.isupper() and isinstance(value, bytes)
    ]
    labels.append(unsubscribe_tokens(1).decode().replace("kid 1", "kid N"))
    for label in labels:
        assert f"`{label}`" in text, label
    assert "**Rotating the root**" in text
