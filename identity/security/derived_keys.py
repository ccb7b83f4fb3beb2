"""The keys the service's purposes use, each derived from IDENTITY_SECRET_KEY with
HKDF-SHA256 (RFC 5869) and a label of its own: no two purposes share a key, none uses
the secret itself, and a key that leaks (a throttle's HMAC, say) tells nothing of the
others or of the secret.

The labels are fixed for good. What a key made stays in the database and in mails
already sent: change a label and the signing keys sealed under it no longer open, and
every unsubscribe link ever mailed stops working. A new purpose gets a new label here;
docs/security.md lists them all and says how to rotate the secret. Production refuses
a root with little randomness (`root_secret_weakness`).
"""

import collections
import functools
import math

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# The private halves of the access tokens' signing keys at rest (AES-256-GCM).
SIGNING_KEYS_AT_REST = b"identity: signing keys at rest, AES-256-GCM, v1"
# Failed-login counts per address: the throttle's name is an HMAC of the address key,
# so the table holds no address.
LOGIN_THROTTLES = b"identity: login throttles, HMAC-SHA256, v1"
# The second factor's TOTP secrets at rest (AES-256-GCM).
SECOND_FACTOR_SECRETS = b"identity: second-factor secrets at rest, AES-256-GCM, v1"
# The recovery codes as stored and looked up (HMAC-SHA256).
RECOVERY_CODES = b"identity: recovery codes, HMAC-SHA256, v1"
# The suppression list of erased people's addresses (HMAC-SHA256 of the address key).
SUPPRESSED_ADDRESSES = b"identity: suppressed addresses, HMAC-SHA256, v1"


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


# What production asks of the root (identity.config refuses less at start): enough
# characters, of enough kinds, and nothing zxcvbn can guess. A random 32-character hex or
# base64 secret has 128 bits or more, scores 93 bits or more by its characters'
# frequencies and 10^28 guesses or more with zxcvbn (which counts 10 per unknown
# character); "a" * 32 scores 0 bits, "password" * 5 110 bits but 10^1 guesses, a
# random string of two characters 40 bits (zxcvbn cannot see a short alphabet).
ROOT_MIN_CHARACTERS = 32
ROOT_MIN_FREQUENCY_BITS = 80
ROOT_MIN_GUESSES_LOG10 = 25
# A person's secret scores past 10^25 too once it is long enough ("Summer2026!Winter2026!…",
# "Copernica-Identity-Production-2026-Secret!", a counter in hex): what gives it away is a
# word or run from the lists people's passwords are made of, 7 characters or longer.
# Measured on 4,500 secrets from `secrets.token_hex(32)`, `token_urlsafe(32)` and base64 of
# 32 random bytes: the longest such word held 6 characters (7 times), 7 never.
ROOT_MAX_WORD = 7
# ...unless chance alone puts such a token there often enough: zxcvbn's password list holds
# a thousand hex-looking tokens of 7 or 8 characters ("1234567", "01012011", "abcd1234"),
# and a random 64-character hex secret holds one of them about once in 10^4 (it refused
# one in a test run). A token counts only when the secret's alphabet makes it that rare
# by chance: fewer than one in 10^9 at its length and place (a hex token of 9 characters,
# a lowercase word of 8, a mixed-case or base64 one of 6).
ROOT_WORD_CHANCE = 1e-9
# zxcvbn's time grows fast with length (identity.security.passwords): a start this long
# stands for the whole; a strong secret does not begin weakly.
_ROOT_SCORED_CHARACTERS = 64

ROOT_RULE = (
    f"at least {ROOT_MIN_CHARACTERS} characters, of many kinds (at least"
    f" {ROOT_MIN_FREQUENCY_BITS} bits by their frequencies), without words, keyboard runs,"
    f" sequences or repeats (at least 10^{ROOT_MIN_GUESSES_LOG10} guesses by zxcvbn, and no"
    f" word of its lists of {ROOT_MAX_WORD} characters or more): made by a generator, such"
    " as `openssl rand -hex 32`"
)


def root_secret_weakness(secret: str) -> str | None:
    """Why `secret` is too weak a root for production, or None. Says which rule it fails,
    never any part of it."""
    if len(secret) < ROOT_MIN_CHARACTERS:
        return f"is shorter than {ROOT_MIN_CHARACTERS} characters"
    if _frequency_bits(secret) < ROOT_MIN_FREQUENCY_BITS:
        return "uses too few different characters"
    # Tens of milliseconds to load: production's start only. zxcvbn's own two steps, so
    # its matches are found once for both rules.
    from zxcvbn.matching import RANKED_DICTIONARIES, omnimatch
    from zxcvbn.scoring import most_guessable_match_sequence

    scored = secret[:_ROOT_SCORED_CHARACTERS]
    matches = omnimatch(scored, RANKED_DICTIONARIES)
    if most_guessable_match_sequence(scored, matches)["guesses_log10"] < ROOT_MIN_GUESSES_LOG10:
        return "is made of words, keyboard runs, sequences or repeats"
    alphabet = _alphabet(secret)
    if any(_word(match, alphabet, len(scored)) for match in matches):
        return "holds words or runs that people's passwords are made of: a person chose it"
    return None


def _word(match: dict, alphabet: int, length: int) -> bool:
    """A match of zxcvbn's that a generator's output does not hold: a word of its lists
    (as written, not reversed or in l33t) of `ROOT_MAX_WORD` characters or more, which a
    random string of `alphabet` characters and `length` holds by chance less often than
    ROOT_WORD_CHANCE."""
    token = len(match["token"])
    return (
        match["pattern"] == "dictionary"
        and not match.get("l33t")
        and not match.get("reversed")
        and token >= ROOT_MAX_WORD
        and (length - token + 1) * alphabet**-token < ROOT_WORD_CHANCE
    )


_HEX = frozenset("0123456789abcdef-")
_HEX_UPPER = frozenset("0123456789ABCDEF-")


def _alphabet(secret: str) -> int:
    """How many characters a generator of `secret` drew from: 16 for hex (UUIDs' hyphens
    apart), else the sizes of the kinds it holds (lowercase, uppercase, digits, the rest
    of printable ASCII)."""
    if set(secret) <= _HEX or set(secret) <= _HEX_UPPER:
        return 16
    kinds = (
        (str.islower, 26),
        (str.isupper, 26),
        (str.isdigit, 10),
        (lambda c: not c.isalnum(), 33),
    )
    return sum(size for kind, size in kinds if any(kind(c) for c in secret))


def _frequency_bits(text: str) -> float:
    """Its length times the Shannon entropy of its characters' frequencies: what a random
    string of that alphabet and length would hold, at most."""
    counts = collections.Counter(text)
    return -sum(n * math.log2(n / len(text)) for n in counts.values())
