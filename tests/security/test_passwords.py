import random
import statistics
import string
import time

import pytest

from identity.config import load_config
from identity.security.passwords import (
    MAX_LENGTH,
    Passwords,
    check_password,
    normalise_password,
)

ANNA = {"email": "Anna.vanderBerg@example.com", "names": ["Anna", "van der", "Berg"]}
STRONG = "lantern orbit cactus velvet"


@pytest.fixture(scope="module")
def passwords():
    """At the configured (default) cost, as the service runs."""
    return Passwords.from_settings(load_config(environ={}))


def refusals(password, previous_hashes=(), **person):
    return check_password(password, previous_hashes=list(previous_hashes), **(person or ANNA))


def random_password(length: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(length))


# --- the policy -------------------------------------------------------------------------


def test_a_strong_password_is_accepted():
    assert refusals(STRONG) == []


def test_fewer_than_eight_characters_is_too_short():
    (reason,) = refusals("Xq7#vLp")
    assert "at least 8 characters" in reason


def test_length_is_counted_after_nfkc():
    # Eight code points, four characters once the accents are composed.
    assert "at least 8 characters" in refusals("e\u0301" * 4)[0]
    # Four ligatures are eight letters.
    assert not any("at least 8" in reason for reason in refusals("\ufb01\ufb02\ufb03\ufb04"))


def test_64_and_1000_characters_are_accepted_when_strong():
    passphrase = "lantern orbit cactus velvet harbour quiver maple drizzle tundra!"
    assert len(passphrase) == 64
    assert refusals(passphrase) == []
    assert refusals(random_password(MAX_LENGTH, seed=1)) == []


def test_more_than_1000_characters_is_refused_before_anything_else():
    assert refusals(random_password(MAX_LENGTH + 1, seed=1)) == ["Use at most 1,000 characters."]


@pytest.mark.parametrize(
    ("password", "code_point"),
    [
        ("lantern\x00orbit cactus", "U+0000"),
        ("lantern\torbit cactus", "U+0009"),
        ("lantern\x1b[0morbit", "U+001B"),
        ("lantern orbit\n", "U+000A"),
        ("lantern\ud800orbit cactus", "U+D800"),
        ("lantern\u0378orbit cactus", "U+0378"),  # not assigned (yet)
    ],
)
def test_control_characters_lone_surrogates_and_unassigned_code_points_are_refused(
    password, code_point
):
    (reason,) = refusals(password)
    assert code_point in reason and "leave it out" in reason


@pytest.mark.parametrize(
    "password", ["password1", "Copernica2026!", "P@ssw0rd!", "qwertyuiop", "Wachtwoord123!"]
)
def test_common_passwords_are_too_easy_to_guess(password):
    assert any(
        reason.startswith("The password is too easy to guess.") for reason in refusals(password)
    )


def test_the_reason_carries_zxcvbn_advice():
    (reason,) = refusals("password1")
    assert reason == (
        "The password is too easy to guess. This is a very common password."
        " Add another word or two. Uncommon words are better."
    )


def test_full_width_digits_are_the_digits_they_look_like():
    assert refusals("１２３４５６７８") == refusals("12345678")
    assert "too easy to guess" in refusals("１２３４５６７８")[0]


BUILT_FROM = "built from your email address, your name or one of our product names"


@pytest.mark.parametrize(
    "password",
    [
        "anna.vanderberg2026",  # the local part and digits
        "ANNA.VANDERBERG!!!",  # in any case
        "vanderberg1987!",  # a part of the local part
        "AnnaBerg12345",  # the names
        "berg-example-42",  # a name and the domain
        "MailerQ-2026!",  # a product
        "copernicacopernica",  # nothing but a product
        "an" + "anna" + "na" + "Xz!",  # taking one out joins another
    ],
)
def test_a_password_built_from_the_persons_own_words_is_refused(password):
    assert any(BUILT_FROM in reason for reason in refusals(password))


@pytest.mark.parametrize(
    "password",
    [
        "Anna drinks velvet lanterns",  # eight and more characters beside the name
        "copernica velvet harbour",  # likewise beside a product
        "vanilla comet drizzle",  # "van" (the infix) and "com" are too short to count
    ],
)
def test_own_words_are_allowed_with_enough_beside_them(password):
    assert not any(BUILT_FROM in reason for reason in refusals(password))


def test_own_words_come_from_this_persons_address_and_names():
    jan = {"email": "j.hendrikse@example.nl", "names": ["Jan"]}
    assert any(BUILT_FROM in reason for reason in refusals("hendrikse2026", **jan))
    assert not any(BUILT_FROM in reason for reason in refusals("hendrikse2026"))


def test_a_recent_password_is_refused_in_any_normal_form(passwords):
    history = [passwords.hash("not this one at all"), passwords.hash("ﬁsh harbour lantern")]
    reasons = refusals("fish harbour lantern", previous_hashes=history)
    assert reasons == ["You used this password recently; choose one you have not used here."]
    assert refusals("fish harbour lanterns", previous_hashes=history) == []


def test_an_unusable_hash_in_the_history_is_skipped(passwords):
    history = ["", "$2b$12$notargon2", "$argon2id$v=19$m=19456,t=2,p=1$broken", "zzz"]
    assert refusals(STRONG, previous_hashes=history) == []


def test_scoring_cannot_be_made_slow():
    """zxcvbn alone takes seconds on these (tens of seconds on the plain ones)."""
    crafted = [
        "4@1!|$5730+7(<{[" * 62,
        "1|!7+$5%(<[{0234@698" * 50,
        "1/1/1990" * 125,
        "a" * MAX_LENGTH,
        random_password(MAX_LENGTH, seed=2),
    ]
    for password in crafted:
        started = time.perf_counter()
        check_password(password, email="a@example.com", names=[], previous_hashes=[])
        assert time.perf_counter() - started < 1.0, password[:20]


def test_a_long_password_that_starts_weakly_is_refused():
    assert "too easy to guess" in refusals("a" * 64 + random_password(100, seed=3))[0]


def test_normalising_is_nfkc_and_never_shortens():
    assert normalise_password("\ufb01ve") == "five"
    assert normalise_password("Ｒｉｖｅｒ２０２６") == "River2026"
    assert normalise_password("x" * 5000) == "x" * 5000


# --- hashing ----------------------------------------------------------------------------


def test_hashes_are_argon2id_at_the_configured_cost(passwords):
    stored = passwords.hash(STRONG)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.hash(STRONG) != stored  # a fresh salt each time
    assert passwords.verify(stored, STRONG)
    assert not passwords.verify(stored, STRONG + "!")


def test_the_ligature_and_full_width_forms_verify_as_the_same_password(passwords):
    assert passwords.verify(passwords.hash("ﬁsh Ｒｉｖｅｒ２０２６"), "fish River2026")
    assert passwords.verify(passwords.hash("fish River2026"), "ﬁsh Ｒｉｖｅｒ２０２６")


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "",
        "plain text",
        "$2b$12$abcdefghijklmnopqrstuv",
        "$argon2id$v=19$broken",
        "$argon2id$v=19$m=19456,t=2,p=1$é$é",
    ],
)
def test_an_unusable_hash_verifies_nothing_and_raises_nothing(passwords, stored):
    assert passwords.verify(stored, STRONG) is False


def test_a_password_no_hash_could_be_made_of_verifies_as_false(passwords):
    assert passwords.verify(passwords.hash(STRONG), "lone \ud800 surrogate") is False


def test_a_hash_made_with_other_parameters_wants_a_rehash(passwords):
    costlier = Passwords(time_cost=3, memory_kib=19456, parallelism=1)
    older = costlier.hash(STRONG)
    assert passwords.verify(older, STRONG)  # still good for logging in
    assert passwords.needs_rehash(older)
    assert not passwords.needs_rehash(passwords.hash(STRONG))
    assert not costlier.needs_rehash(older)
    assert passwords.needs_rehash("not a hash")


def test_hashing_and_verifying_run_through_the_offload():
    calls = []

    def offload(fn, *args):
        calls.append(fn.__name__)
        return fn(*args)

    passwords = Passwords(time_cost=2, memory_kib=19456, parallelism=1, offload=offload)
    stored = passwords.hash(STRONG)
    assert passwords.verify(stored, STRONG)
    passwords.verify_nothing(STRONG)
    assert calls == ["hash", "_verify", "_verify"]


@pytest.mark.timing
def test_an_unknown_address_takes_as_long_as_a_wrong_password(passwords):
    stored = passwords.hash(STRONG)
    wrong, unknown, no_hash = [], [], []
    # Interleaved, so a busy moment of the machine falls on all three alike.
    for _ in range(20):
        for times, check in (
            (wrong, lambda: passwords.verify(stored, "not the password")),
            (unknown, lambda: passwords.verify_nothing("not the password")),
            (no_hash, lambda: passwords.verify(None, "not the password")),
        ):
            started = time.perf_counter()
            check()
            times.append(time.perf_counter() - started)
    baseline = statistics.median(wrong)
    for times in (unknown, no_hash):
        assert abs(statistics.median(times) - baseline) <= 0.3 * baseline
