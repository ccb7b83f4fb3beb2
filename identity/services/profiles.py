"""Minimal profiles: what a site knows about an address, joined to the one record it belongs to.

The merge rule: a submission fills blanks and never overwrites a value the record already
has, whoever gave it. A site cannot tell whether what it holds is newer than what the
person typed in themselves; the person corrects their own record.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import Any
from uuid import UUID

import psycopg

from identity.errors import InvalidInput, NotFound
from identity.services.contact import email_key, normalise_email, normalise_phone
from identity.store import users as store

PROFILE_FIELDS = store.PROFILE_COLUMNS
_PHONE_FIELDS = ("phone", "mobile", "fax")


@dataclass(frozen=True)
class Submission:
    """One site's knowledge of one address, checked and normalised."""

    email: str
    source: str
    fields: dict[str, str]

    @cached_property
    def key(self) -> str:
        return email_key(self.email)


@dataclass(frozen=True)
class Outcome:
    """What became of one submission: `created`, `merged` or `rejected`."""

    ref: Any
    status: str
    user_id: UUID | None = None
    errors: dict[str, list[str]] | None = None
    filled: tuple[str, ...] = ()


def prepare_submission(data: dict) -> Submission:
    """Check and normalise a submission (email, source, known fields, optional country hint)."""
    errors: dict[str, list[str]] = {}
    email = None
    try:
        email = normalise_email(data["email"])
    except InvalidInput as exc:
        errors.update(exc.errors)
    fields = {}
    country = data.get("country")
    for name in PROFILE_FIELDS:
        value = data.get(name)
        # Blank and "unspecified" say nothing, so they fill nothing.
        value = value.strip() if value else None
        if not value or (name == "gender" and value == "unspecified"):
            continue
        if name in _PHONE_FIELDS:
            try:
                value = normalise_phone(value, name, country)
            except InvalidInput as exc:
                errors.update(exc.errors)
                continue
        fields[name] = value
    if errors:
        raise InvalidInput("some fields are not acceptable", errors=errors)
    return Submission(email=email, source=data["source"], fields=fields)


def record_profile(conn: psycopg.Connection, site: str, data: dict) -> tuple[dict, Outcome]:
    """Make a minimal profile or add to the record with that address; the record as it
    now stands, and what became of the submission."""
    submission = prepare_submission(data)
    (outcome,) = record_profiles(conn, site, [(None, submission)])
    return store.get_by_id(conn, outcome.user_id), outcome


def record_profiles(
    conn: psycopg.Connection, site: str, submissions: Iterable[tuple[Any, Submission]]
) -> list[Outcome]:
    """Write many submissions in one transaction; an address given twice is merged in order."""
    outcomes: list[Outcome] = []
    with conn.transaction():
        for round_ in _rounds(submissions):
            outcomes.extend(_record_round(conn, site, round_))
    return outcomes


def _rounds(submissions: Iterable[tuple[Any, Submission]]) -> Iterator[list]:
    """Split into runs in which no address repeats: one statement may touch a row only once."""
    round_: list = []
    seen: set[str] = set()
    for ref, submission in submissions:
        if submission.key in seen:
            yield round_
            round_, seen = [], set()
        seen.add(submission.key)
        round_.append((ref, submission))
    if round_:
        yield round_


def _record_round(conn: psycopg.Connection, site: str, round_: list) -> list[Outcome]:
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    # Insert first: an address already known (or being inserted by a concurrent
    # transaction, which this waits for) is skipped, then locked and merged into.
    inserted = store.insert_new(
        conn,
        [
            {
                "email": s.email,
                **s.fields,
                "field_sources": _sources(("email", *s.fields), s.source, site, at),
            }
            for _, s in round_
        ],
    )
    existing = store.lock_by_email(conn, [s.key for _, s in round_ if s.key not in inserted])

    outcomes, fills = [], []
    for ref, submission in round_:
        if submission.key in inserted:
            outcomes.append(
                Outcome(ref, "created", inserted[submission.key], filled=tuple(submission.fields))
            )
            continue
        record = existing[submission.key]
        filled = tuple(
            name
            for name in submission.fields
            if record[name] is None or (name == "gender" and record[name] == "unspecified")
        )
        if filled:
            fills.append(
                {
                    "id": record["id"],
                    **{name: submission.fields[name] for name in filled},
                    "field_sources": _sources(filled, submission.source, site, at),
                }
            )
        outcomes.append(Outcome(ref, "merged", record["id"], filled=filled))
    store.fill_blanks(conn, fills)
    return outcomes


def _sources(fields: Iterable[str], source: str, site: str, at: str) -> dict:
    return {name: {"source": source, "site": site, "at": at} for name in fields}


# One line of a bulk import after checking: (line number, submission, None) when it is
# good, (line number, None, {field: [messages]}) when it is not.
CheckedLine = tuple[int, Submission | None, dict[str, list[str]] | None]


def check_line(line_no: int, data: dict) -> CheckedLine:
    """A line of a bulk import, checked as `prepare_submission` checks one submission."""
    try:
        return line_no, prepare_submission(data), None
    except InvalidInput as exc:
        return line_no, None, exc.errors


def import_profiles(
    conn: psycopg.Connection, site: str, batches: Iterable[list[CheckedLine]]
) -> Iterator[Outcome]:
    """Write checked lines a batch per transaction; the outcome of every line, in line
    order. A rejected line never stops the good ones."""
    for batch in batches:
        good = [(line_no, submission) for line_no, submission, _ in batch if submission]
        written = iter(record_profiles(conn, site, good) if good else ())
        for line_no, submission, errors in batch:
            yield next(written) if submission else Outcome(line_no, "rejected", errors=errors)


def get_user(conn: psycopg.Connection, user_id: UUID) -> dict:
    user = store.get_by_id(conn, user_id)
    if user is None:
        raise NotFound("no record with this id")
    return user


def find_user_by_email(conn: psycopg.Connection, address: str) -> dict:
    user = store.get_by_email(conn, email_key(normalise_email(address)))
    if user is None:
        raise NotFound("no record with this email address")
    return user
