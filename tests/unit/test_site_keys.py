import math

from identity.security.site_keys import KEY_PREFIX, new_site_key, site_key_hash, site_key_label


def test_a_key_carries_at_least_128_random_bits():
    key = new_site_key()
    random_part = key.removeprefix(KEY_PREFIX)
    # URL-safe base64: 6 bits per character.
    assert len(random_part) * 6 >= 128
    keys = {new_site_key() for _ in range(1000)}
    assert len(keys) == 1000


def test_what_is_stored_is_not_the_key_and_tells_keys_apart():
    key = new_site_key()
    digest = site_key_hash(key)
    assert key.encode() not in digest
    assert len(digest) * 8 == 256
    assert site_key_hash(key) == digest
    assert site_key_hash(new_site_key()) != digest


def test_the_label_shows_too_little_to_use_the_key():
    key = new_site_key()
    label = site_key_label(key)
    assert key.startswith(label)
    hidden_bits = (len(key) - len(label)) * 6
    assert hidden_bits >= 128 and not math.isclose(len(label), len(key))
