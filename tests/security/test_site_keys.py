import math

from identity.security.site_keys import looks_like_site_key, new_site_key, site_key_label


def test_a_new_key_has_the_shape_that_is_checked_before_the_database_is_asked():
    key = new_site_key()
    assert looks_like_site_key(key)
    for forged in (key[:-1], key + "A", key.replace("idsk_", "idsk-"), key[:-1] + "!", ""):
        assert not looks_like_site_key(forged)


def test_the_label_shows_too_little_to_use_the_key():
    key = new_site_key()
    label = site_key_label(key)
    assert key.startswith(label)
    hidden_bits = (len(key) - len(label)) * 6
    assert hidden_bits >= 128 and not math.isclose(len(label), len(key))
