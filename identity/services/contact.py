"""Email addresses and phone numbers, as the record keeps them."""

import functools
import importlib
import unicodedata

import idna
import phonenumbers
from email_validator import EmailNotValidError, validate_email

from identity.errors import InvalidInput

# A domain is checked the same way every time (its IDNA form, its labels, its TLD), and
# an import names a few domains a hundred thousand times: email-validator's check of the
# domain is remembered per domain. A fifth of the work of checking an import line went
# there. Only what passes is remembered (lru_cache keeps no exceptions).
_checker = importlib.import_module("email_validator.validate_email")  # the module, not the function
_checker.validate_email_domain_name = functools.lru_cache(maxsize=65536)(
    _checker.validate_email_domain_name
)


def normalise_email(address: str, field: str = "email") -> str:
    """The address as stored: syntax checked, domain lower-cased and in Unicode (IDN).

    Deliverability (DNS) is not checked: the service must answer without the network, and
    a mail to the address is what proves it.
    """
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidInput("invalid email address", errors={field: [str(exc)]}) from None


def email_key(address: str) -> str:
    """What makes two addresses the same person, the same on every database whatever its
    locale: the local part under Unicode's canonical caseless matching (NFC of the
    case-folded NFD), so İ, final ς and ß compare as Unicode says they do; the domain as
    DNS knows it, in its IDNA (xn--) form, where straße.de and strasse.de, or two Greek
    names that differ in a final sigma, are different domains that case-folding merges.

    Stored in users.email_key and looked up by plain equality: PostgreSQL's lower()
    depends on the database's locale and disagrees with Python (and with itself) outside
    ASCII. Changing this function needs a migration that computes the column again.
    """
    if address.isascii():
        return address.lower()
    local, at, domain = address.rpartition("@")
    local = unicodedata.normalize("NFC", unicodedata.normalize("NFD", local).casefold())
    if domain.isascii():
        return f"{local}{at}{domain.lower()}"
    try:
        return f"{local}{at}{idna.encode(domain, uts46=True).decode('ascii').lower()}"
    except idna.IDNAError:
        # Not an address the record could hold (every stored domain encodes), so a key
        # with a Unicode domain, which no stored key has, finds nothing.
        return f"{local}{at}{unicodedata.normalize('NFC', domain.casefold())}"


def fold(prefix: str) -> str:
    """The beginning of an address as its key begins (`email_key`'s folding): what staff
    type into a search finds the addresses it begins, straße finding strasse@."""
    if "@" in prefix:
        return email_key(prefix)
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", prefix).casefold())


def normalise_phone(number: str, field: str, country: str | None = None) -> str:
    """The number in E.164; a national number needs `country` (ISO 3166 alpha-2) to be read."""
    try:
        parsed = phonenumbers.parse(number, country)
    except phonenumbers.NumberParseException as exc:
        hint = "" if country else "; give it in +international form or send a country"
        raise InvalidInput(
            "invalid phone number", errors={field: [f"{_parse_reason(exc)}{hint}"]}
        ) from None
    if parsed.extension:
        raise InvalidInput(
            "invalid phone number",
            errors={field: ["has an extension, which is not kept; send the number without it"]},
        )
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidInput(
            "invalid phone number",
            errors={field: ["not a valid number for its country"]},
        )
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if len(e164) > 16:  # "+" and at most 15 digits; leading zeros can make a valid one longer
        raise InvalidInput(
            "invalid phone number", errors={field: ["longer than the 15 digits E.164 allows"]}
        )
    return e164


def _parse_reason(exc: phonenumbers.NumberParseException) -> str:
    return {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code",
        phonenumbers.NumberParseException.NOT_A_NUMBER: "not a phone number",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
        phonenumbers.NumberParseException.TOO_LONG: "too long",
    }.get(exc.error_type, "not a phone number")


PHONE_FIELDS = ("phone", "mobile", "fax")


def normalise_phones(fields: dict, country: str | None, errors: dict) -> dict:
    """`fields` with each phone number in it in E.164; a number that cannot be read is
    left out, and why goes into `errors`."""
    normalised = {}
    for name, value in fields.items():
        if name in PHONE_FIELDS and value is not None:
            try:
                value = normalise_phone(value, name, country)
            except InvalidInput as exc:
                errors.update(exc.errors)
                continue
        normalised[name] = value
    return normalised
