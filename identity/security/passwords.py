"""Passwords: how they are kept (argon2id) and which ones a person may choose."""

import contextlib
import re
import secrets
import threading
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

from argon2 import PasswordHasher, Type
from argon2.exceptions import VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn
from zxcvbn.matching import L33T_TABLE, enumerate_l33t_subs, relevant_l33t_subtable

MIN_LENGTH = 8
# Long enough for any passphrase or password manager; the cap keeps what one request
# can make the server hash and score small.
MAX_LENGTH = 1000
# zxcvbn's scores run 0 (guessed at once) to 4; 3 is "safely unguessable" online.
MIN_SCORE = 3
# Guessed first for anyone here: the products, this service and the company's trade.
PRODUCT_WORDS = ("copernica", "smtpeter", "mailerq", "identity", "marketing")
# zxcvbn's dictionaries are English; many people here are Dutch.
DUTCH_WORDS = ("wachtwoord", "welkom")
# A word of the person's own (a part of their address, a name) counts from this length:
# shorter ones, like "ann" or "com", occur inside too many ordinary words.
OWN_WORD_MIN_LENGTH = 4

Offload = Callable[..., Any]


def call_directly(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class Passwords:
    """Hashes passwords with argon2id at the configured cost and checks them against the
    stored hashes. The hashing runs through `offload(fn, *args)`, so the server can move
    it to a thread pool; by default it runs in the caller's thread."""

    def __init__(
        self, *, time_cost: int, memory_kib: int, parallelism: int, offload: Offload = call_directly
    ):
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
        )
        self._offload = offload
        # What `verify_nothing` checks against: a hash of nothing anyone knows, at the
        # current cost, so it takes as long as checking a real one.
        self._decoy = self._hasher.hash(secrets.token_urlsafe(32))

    @classmethod
    def from_settings(cls, config: dict, *, offload: Offload = call_directly) -> "Passwords":
        return cls(
            time_cost=config["PASSWORD_TIME_COST"],
            memory_kib=config["PASSWORD_MEMORY_KIB"],
            parallelism=config["PASSWORD_PARALLELISM"],
            offload=offload,
        )

    def offload(self, fn: Callable[..., Any], *args) -> Any:
        """`fn(*args)` where the hashing runs: other CPU-bound password work, such as
        `check_password`, goes there too."""
        return self._offload(fn, *args)

    def hash(self, password: str) -> str:
        """The hash to store for `password` (normalised first), with a fresh salt."""
        return self._offload(self._hasher.hash, normalise_password(password))

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether `password` is the one `stored_hash` was made from. A mismatch and a
        hash that cannot be used (none, another scheme, damaged) are both False, and take
        as long as a real check, so they cannot be told apart by the time they take."""
        return self._offload(self._verify, stored_hash, _secret(password))

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether `stored_hash` was made with other parameters than the current ones: hash
        the password again at the next good login."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except ValueError:
            return True

    def verify_nothing(self, password: str) -> None:
        """Spend the time of a check when there is no hash to check (an unknown address),
        so that answer takes as long as a wrong password."""
        self.verify(self._decoy, password)

    def _verify(self, stored_hash: str | None, secret: bytes) -> bool:
        try:
            # An account without a password has no hash: "" is refused like any bad one.
            return self._hasher.verify(stored_hash or "", secret)
        except VerifyMismatchError:
            return False
        except (VerificationError, ValueError):
            with contextlib.suppress(VerifyMismatchError):
                self._hasher.verify(self._decoy, secret)
            return False


def normalise_password(password: str) -> str:
    """The form a password is checked, hashed and verified in: NFKC, so "ﬁ" and "fi", or
    full-width and ASCII digits, are one password whichever keyboard typed it. Never
    truncated: every character counts."""
    return unicodedata.normalize("NFKC", password)


def _secret(password: str) -> bytes:
    # A lone surrogate cannot be UTF-8; encoded as it is, it simply matches no hash
    # (no hash is ever made of one: check_password refuses it).
    return normalise_password(password).encode("utf-8", "surrogatepass")


def check_password(
    password: str, *, email: str, names: Iterable[str], previous_hashes: Iterable[str]
) -> list[str]:
    """The reasons `password` may not be chosen, each a sentence the person can act on;
    empty when it may.

    Its length and characters are checked first and alone: a password refused for those
    is not looked into further. Then whether it is built from the person's own words and
    whether it is easy to guess (zxcvbn, told those words). Only a password that passes
    all that is checked against `previous_hashes` (the account's last few hashes), each
    an argon2 verification: tens of milliseconds apiece, so run this through the same
    offload as the hashing.
    """
    password = normalise_password(password)
    if len(password) > MAX_LENGTH:
        return [f"Use at most {MAX_LENGTH:,} characters."]
    unusable = next(_unusable_characters(password), None)
    reasons = [] if unusable is None else [_character_problem(unusable)]
    if len(password) < MIN_LENGTH:
        reasons.append(
            f"Use at least {MIN_LENGTH} characters; a few unrelated words together are strong"
            " and easy to remember."
        )
    if reasons:
        return reasons

    own_words = [*_own_words(email, names), *PRODUCT_WORDS]
    if len(_without(password.casefold(), own_words)) < MIN_LENGTH:
        reasons.append(
            "The password is built from your email address, your name or one of our product"
            f" names; leaving those out, it must still have at least {MIN_LENGTH} characters."
        )
    guessability = _guessability(password, [*own_words, *DUTCH_WORDS])
    if guessability["score"] < MIN_SCORE:
        feedback = guessability["feedback"]
        advice = filter(None, [feedback["warning"], *feedback["suggestions"]])
        reasons.append(" ".join(["The password is too easy to guess.", *advice]))
    if not reasons and _used_before(password, previous_hashes):
        reasons.append("You used this password recently; choose one you have not used here.")
    return reasons


# Cc: controls (NUL, tab, line breaks, escape); Cs: half a surrogate pair, not a character
# on its own; Cn: not yet assigned, so a later Unicode may give it a meaning and NFKC a
# different result, and the password would stop matching its hash.
_UNUSABLE = {
    "Cc": "a control character, which keyboards cannot reliably type",
    "Cs": "half of a surrogate pair, which is not a character on its own",
    "Cn": "a code point Unicode has not assigned yet, whose meaning may still change",
}


def _unusable_characters(password: str) -> Iterable[str]:
    return (char for char in password if unicodedata.category(char) in _UNUSABLE)


def _character_problem(char: str) -> str:
    what = _UNUSABLE[unicodedata.category(char)]
    return f"The password contains U+{ord(char):04X}, {what}; leave it out."


def _own_words(email: str, names: Iterable[str]) -> list[str]:
    """The person's own words, casefolded: their address's local part whole and in pieces,
    its domain's labels, and their names whole and word by word."""
    local, _, domain = normalise_password(email).casefold().rpartition("@")
    words = [local, *re.split(r"[._+-]", local), *domain.split(".")]
    for name in names:
        name = normalise_password(name).casefold().strip()
        words += [name, *re.split(r"[\s'\u2019-]+", name)]
    return list(dict.fromkeys(word for word in words if word))


def _without(text: str, words: list[str]) -> str:
    """`text` with every occurrence of the longer `words` taken out, longest first, until
    none is left (taking one out can join the halves of another)."""
    words = sorted((w for w in words if len(w) >= OWN_WORD_MIN_LENGTH), key=len, reverse=True)
    while True:
        shorter = text
        for word in words:
            shorter = shorter.replace(word, "")
        if shorter == text:
            return text
        text = shorter


# zxcvbn's running time grows with the square of the length times the number of ways it
# reads the l33t characters present (4 as a, 1 as i or l, ...): here 1,000 characters
# took 38 s, and 64 crafted ones ("4@1!|$5730+7(<{[" repeated) 1.4 s. So it scores a
# prefix: at most 64 characters, fewer while readings * length**2 would pass
# _SCORING_WORK (about 80 ms here), and never fewer than 10 (10 characters of such
# symbols score 3 or 4 on their own). A prefix is a safe stand-in: a strong start makes a
# strong password, so it may refuse a long password that starts weakly ("aaaa..."),
# never accept a weak one.
_SCORED_MAX = 64
_SCORED_MIN = 10
_SCORING_WORK = 25_000
_L33T_CHARACTERS = frozenset(char for chars in L33T_TABLE.values() for char in chars)

# zxcvbn keeps the user inputs of the call in a module-level dictionary: two threads
# scoring at once would score against each other's words.
_zxcvbn_lock = threading.Lock()


def _guessability(password: str, user_inputs: list[str]) -> dict:
    scored = _scored_part(password)
    with _zxcvbn_lock:
        return zxcvbn(scored, user_inputs=user_inputs)


def _scored_part(password: str) -> str:
    """The longest start of `password` that zxcvbn scores within _SCORING_WORK."""
    l33t_seen = ""
    readings = 1
    for length, char in enumerate(password[:_SCORED_MAX], start=1):
        if char in _L33T_CHARACTERS and char not in l33t_seen:
            l33t_seen += char
            readings = 0  # to be counted when it matters, past the minimum
        if length <= _SCORED_MIN:
            continue
        if not readings:
            readings = len(enumerate_l33t_subs(relevant_l33t_subtable(l33t_seen, L33T_TABLE)))
        if readings * length * length > _SCORING_WORK:
            return password[: length - 1]
    return password[:_SCORED_MAX]


# Any instance verifies any argon2 hash: the parameters are read from the hash itself.
_any_argon2 = PasswordHasher()


def _used_before(password: str, previous_hashes: Iterable[str]) -> bool:
    secret = password.encode("utf-8")
    for stored_hash in previous_hashes:
        try:
            if _any_argon2.verify(stored_hash, secret):
                return True
        except (VerificationError, ValueError):
            continue
    return False
