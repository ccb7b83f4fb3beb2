"""A profile submission checked and normalised, without the database: what a POST of one
profile and each line of an import share. The import's helper processes load this, not
`identity.services.profiles` and the database driver it brings."""

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from identity.errors import InvalidInput
from identity.services.contact import email_key, normalise_email, normalise_phones

# The fields a profile submission may carry: the record's columns of the same names
# (identity.store.users.PROFILE_COLUMNS, which a test holds to this).
PROFILE_FIELDS = (
    "first_name",
    "infix",
    "last_name",
    "suffix",
    "gender",
    "phone",
    "mobile",
    "fax",
    "language",
)


@dataclass(frozen=True)
class Submission:
    """One site's knowledge of one address, checked and normalised."""

    email: str
    source: str
    fields: dict[str, str]
    # Lists brought over from an old system: (list key, consented at, consent text).
    newsletters: tuple[tuple[str, datetime, str], ...] = ()

    @cached_property
    def key(self) -> str:
        return email_key(self.email)


def prepare_submission(data: dict) -> Submission:
    """Check and normalise a submission (email, source, known fields, optional country hint)."""
    errors: dict[str, list[str]] = {}
    email = None
    try:
        email = normalise_email(data["email"])
    except InvalidInput as exc:
        errors.update(exc.errors)
    # Blank and "unspecified" say nothing, so they fill nothing.
    fields = {
        name: data[name]
        for name in PROFILE_FIELDS
        if data.get(name) and not (name == "gender" and data[name] == "unspecified")
    }
    fields = normalise_phones(fields, data.get("country"), errors)
    if errors:
        raise InvalidInput("some fields are not acceptable", errors=errors)
    newsletters = tuple(
        (key, consent["consented_at"], consent["consent_text"])
        for key, consent in sorted((data.get("newsletters") or {}).items())
    )
    return Submission(email=email, source=data["source"], fields=fields, newsletters=newsletters)


# One line of a bulk import after checking: (line number, submission, None) when it is
# good, (line number, None, {field: [messages]}) when it is not.
CheckedLine = tuple[int, Submission | None, dict[str, list[str]] | None]


def check_line(line_no: int, data: dict) -> CheckedLine:
    """A line of a bulk import, checked as `prepare_submission` checks one submission."""
    try:
        return line_no, prepare_submission(data), None
    except InvalidInput as exc:
        return line_no, None, exc.errors
