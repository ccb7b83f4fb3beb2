"""Unsubscribe tokens without a database: shape, round trip, tampering, rotation."""

import base64
import uuid

import pytest

from identity.security.unsubscribe_tokens import TOKEN_LENGTH, UnsubscribeTokens

SECRET = "a test secret of at least thirty-two characters"


def test_a_token_names_one_person_and_one_list_in_44_url_safe_characters():
    tokens = UnsubscribeTokens(SECRET)
    person = uuid.uuid4()
    token = tokens.sign(person, 3)
    assert len(token) == TOKEN_LENGTH and token.isascii()
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert tokens.verify(token) == (person, 3)
    assert tokens.sign(person, 3) == token  # the same link every time
    assert tokens.sign(person, 4) != token and tokens.sign(uuid.uuid4(), 3) != token


def test_every_flipped_bit_and_every_cut_is_refused():
    tokens = UnsubscribeTokens(SECRET)
    token = tokens.sign(uuid.uuid4(), 1)
    raw = base64.urlsafe_b64decode(token)
    for i in range(len(raw)):
        for bit in range(8):
            flipped = raw[:i] + bytes([raw[i] ^ (1 << bit)]) + raw[i + 1 :]
            assert tokens.verify(base64.urlsafe_b64encode(flipped).decode()) is None
    for n in range(len(token)):
        assert tokens.verify(token[:n]) is None
    for i in range(len(token)):
        for char in "A_-=+/ .\x00é":
            if token[i] != char:
                assert tokens.verify(token[:i] + char + token[i + 1 :]) is None
    assert tokens.verify(token + "A") is None
    assert tokens.verify(token + "==") is None


def test_another_secret_or_an_unknown_key_id_is_refused():
    person = uuid.uuid4()
    assert UnsubscribeTokens(SECRET).verify(UnsubscribeTokens(SECRET + "x").sign(person, 1)) is None
    assert UnsubscribeTokens(SECRET, 1).verify(UnsubscribeTokens(SECRET, 3).sign(person, 1)) is None


def test_rotation_signs_with_the_new_id_and_still_verifies_the_old():
    person = uuid.uuid4()
    old = UnsubscribeTokens(SECRET, 1).sign(person, 2)
    rotated = UnsubscribeTokens(SECRET, 2)
    new = rotated.sign(person, 2)
    assert new != old and base64.urlsafe_b64decode(new)[0] == 2
    assert rotated.verify(old) == rotated.verify(new) == (person, 2)


@pytest.mark.parametrize("kid", [0, 256, -1])
def test_a_key_id_out_of_range_is_refused(kid):
    with pytest.raises(ValueError):
        UnsubscribeTokens(SECRET, kid)


def test_signing_in_bulk_gives_the_same_tokens_as_one_by_one():
    tokens = UnsubscribeTokens(SECRET, 7)
    people = [uuid.uuid4() for _ in range(100)]
    many = tokens.sign_many(b"".join(person.bytes for person in people), 5).decode()
    assert many == "".join(tokens.sign(person, 5) for person in people)
    assert tokens.sign_many(b"", 5) == b""
