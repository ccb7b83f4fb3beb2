"""Minimal profiles: what a site knows about an address, joined to the one record it belongs to.

The merge rule: a submission fills blanks and never overwrites a value the record already
has, whoever gave it. A site cannot tell whether what it holds is newer than what the
person typed in themselves; the person corrects their own record.
"""

from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache
from typing import Any
from uuid import UUID

import psycopg

from identity.errors import Conflict, NotFound, TooManyRequests
from identity.services import trail
from identity.services.contact import email_key, normalise_email
from identity.services.principal import Principal
from identity.services.submissions import CheckedLine, Submission, prepare_submission
from identity.services.suppression import Suppression
from identity.store import newsletters as newsletter_store
from identity.store import sites as site_store
from identity.store import users as store
from identity.store.transactions import UnitOfWork


@dataclass(frozen=True)
class Outcome:
    """What became of one submission: `created`, `merged` or `rejected`."""

    ref: Any
    status: str
    user_id: UUID | None = None
    errors: dict[str, list[str]] | None = None
    filled: tuple[str, ...] = ()
    # Lists whose consent the line brought over but which already had the person's flag.
    newsletters_kept: tuple[str, ...] = ()


def record_profile(
    uow: UnitOfWork, principal: Principal, data: dict, suppression: Suppression
) -> tuple[dict, Outcome]:
    """Make a minimal profile or add to the record with that address; the record as it
    now stands, and what became of the submission."""
    return join_record(uow.conn, principal, data, suppression)


def join_record(
    conn: psycopg.Connection, principal: Principal, data: dict, suppression: Suppression
) -> tuple[dict, Outcome]:
    """`record_profile` in the transaction of another service's change (a subscription)."""
    submission = prepare_submission(data)
    (outcome,) = record_profiles(conn, principal, [(None, submission)], suppression)
    return store.get_by_id(conn, outcome.user_id), outcome


def record_profiles(
    conn: psycopg.Connection,
    principal: Principal,
    submissions: list[tuple[Any, Submission]],
    suppression: Suppression,
) -> list[Outcome]:
    """Write many submissions, in the caller's transaction; their outcomes in their order.
    An address given twice is merged in order. Consent brought over from elsewhere is not
    taken for an address on the suppression list (an erased person's)."""
    outcomes: list[Outcome | None] = [None] * len(submissions)
    for round_ in _rounds(submissions):
        written = _record_round(conn, principal, round_, suppression)
        for (position, _, _), outcome in zip(round_, written, strict=True):
            outcomes[position] = outcome
    return outcomes


def _rounds(submissions: list[tuple[Any, Submission]]) -> Iterator[list]:
    """The submissions as rounds in which no address repeats (one statement may touch a
    row only once): every address's first submission in the first round, its second in
    the second, and so on. Each round is in email key order, and the first takes every
    lock the later ones need, so all writers lock rows in one order and cannot deadlock.
    Rounds hold (position, ref, submission)."""
    by_occurrence: dict[int, list] = defaultdict(list)
    seen: dict[str, int] = defaultdict(int)
    for position, (ref, submission) in enumerate(submissions):
        by_occurrence[seen[submission.key]].append((position, ref, submission))
        seen[submission.key] += 1
    for occurrence in sorted(by_occurrence):
        yield sorted(by_occurrence[occurrence], key=lambda item: item[2].key)


def _record_round(
    conn: psycopg.Connection, principal: Principal, round_: list, suppression: Suppression
) -> list[Outcome]:
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    site = principal.site_name

    # The lines of an import mostly give the same fields from the same source: their
    # sources read the same, written once.
    @cache
    def sources(fields: tuple[str, ...], source: str) -> str:
        return store.field_sources_json(_sources(fields, source, site, at))

    # Insert first: an address already known (or being inserted by a concurrent
    # transaction, which this waits for) is skipped, then locked and merged into.
    records = [
        {
            "email": s.email,
            "email_key": s.key,
            **s.fields,
            "field_sources": sources(("email", *s.fields), s.source),
        }
        for _, _, s in round_
    ]
    inserted, existing = _insert_or_lock(conn, records)
    outcomes, fills = [], []
    for _, ref, submission in round_:
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
                    "field_sources": sources(filled, submission.source),
                }
            )
        outcomes.append(Outcome(ref, "merged", record["id"], filled=filled))
    store.fill_blanks(conn, fills)
    _import_consents(conn, principal, round_, outcomes, suppression)
    _into_trail(principal, round_, outcomes)
    return outcomes


def _into_trail(principal: Principal, round_: list, outcomes: list[Outcome]) -> None:
    """What a site (or its import) changed of each record: made it, filled fields, brought
    list consent over. A submission that changed nothing is no change."""
    for (_, _, submission), outcome in zip(round_, outcomes, strict=True):
        kept = set(outcome.newsletters_kept)
        lists = [key for key, _, _ in submission.newsletters if key not in kept]
        if outcome.status == "created" or outcome.filled or lists:
            trail.note(
                "profile.created" if outcome.status == "created" else "profile.merged",
                principal,
                outcome.user_id,
                source=submission.source,
                fields=list(outcome.filled) or None,
                lists=lists or None,
            )


# Rounds of insert-then-lock before an address that keeps changing hands is given up.
_HOLDER_ROUNDS = 3


def _insert_or_lock(conn: psycopg.Connection, records: list[dict]) -> tuple[dict, dict]:
    """The ids of the records inserted, and the rows of those whose address was known,
    locked (both by email key). An address can change hands between the two statements
    (a record that held it removed or moved meanwhile, as the undo of a change of address
    joins a profile into the account that takes the address back): such records are tried
    again, insert and lock, a statement's fresh look each time."""
    inserted, existing, pending = {}, {}, records
    for _ in range(_HOLDER_ROUNDS):
        inserted |= store.insert_new(conn, pending)
        known = [r["email_key"] for r in pending if r["email_key"] not in inserted]
        existing |= store.lock_by_email(conn, known)
        pending = [r for r in pending if r["email_key"] not in inserted | existing]
        if not pending:
            return inserted, existing
    raise Conflict("an address of this request changed hands meanwhile: send it again")


def _import_consents(
    conn, principal: Principal, round_: list, outcomes: list[Outcome], suppression: Suppression
) -> None:
    """The lists each line's person consented to elsewhere: subscribed, with that consent
    as the event, where they have no flag on the list yet (never over `unsubscribed`), and
    the address is not on the suppression list (an erased person's: only consent they
    confirm from the mailbox counts). A line's outcome names the lists it left as they
    were."""
    lines = list(enumerate(zip(round_, outcomes, strict=True)))
    asked = [s.key for _, ((_, _, s), _) in lines if s.newsletters]
    if not asked:
        return
    suppressed = suppression.held(conn, asked)
    for i, ((_, _, s), o) in lines:
        if s.key in suppressed and s.newsletters:
            outcomes[i] = replace(o, newsletters_kept=tuple(key for key, _, _ in s.newsletters))
    wanted = [
        (i, o.user_id, n)
        for i, ((_, _, s), o) in lines
        if s.key not in suppressed
        for n in s.newsletters
    ]
    if not wanted:
        return
    ids = {n["key"]: n["id"] for n in newsletter_store.catalog(conn)}
    kept_positions = newsletter_store.import_consents(
        conn,
        principal.site_name,
        [(user_id, ids[key], at, text) for _, user_id, (key, at, text) in wanted],
    )
    kept: dict[int, list[str]] = defaultdict(list)
    for position in sorted(kept_positions):
        i, _, (key, _, _) = wanted[position]
        kept[i].append(key)
    for i, keys in kept.items():
        outcomes[i] = replace(outcomes[i], newsletters_kept=tuple(keys))


def _sources(fields: Iterable[str], source: str, site: str, at: str) -> dict:
    return {name: {"source": source, "site": site, "at": at} for name in fields}


@contextmanager
def exclusive_import(uow: UnitOfWork, principal: Principal) -> Iterator[None]:
    """While the block runs, this site's import is the only one: a second gets
    TooManyRequests. The lock is PostgreSQL's, so it holds across processes and replicas
    and goes with the connection if this process dies; the unit of work keeps that one
    connection across the import's commits."""
    with uow.held() as conn:
        yield from _only_import(conn, principal)


def _only_import(conn: psycopg.Connection, principal: Principal) -> Iterator[None]:
    if not site_store.try_lock_import(conn, principal.site.site_id):
        raise TooManyRequests(
            "this site's previous import is still running; one import per site at a time",
            retry_after=10,
        )
    try:
        yield
    finally:
        # A lost connection took the lock with it; failing here would hide why the
        # import stopped, and how far it got.
        with suppress(psycopg.OperationalError):
            if not conn.broken:
                site_store.unlock_import(conn, principal.site.site_id)


def import_profiles(
    uow: UnitOfWork,
    principal: Principal,
    batches: Iterable[list[CheckedLine]],
    suppression: Suppression,
) -> Iterator[Outcome]:
    """Write checked lines a batch per transaction: unlike every other service, it commits
    on its own (`uow.run` per batch), so a long import neither holds its locks to the end
    nor loses what it did when it stops part-way. The outcome of every line, in line
    order, once its batch is committed; a rejected line never stops the good ones. Call it
    inside `exclusive_import`, with no transaction open."""
    lists = None
    for batch in batches:
        if lists is None and any(s and s.newsletters for _, s, _ in batch):
            lists = {n["key"] for n in newsletter_store.catalog(uow.one_statement)}
        batch = [_consent_allowed(line, principal, lists) for line in batch]
        good = [(line_no, submission) for line_no, submission, _ in batch if submission]
        written = iter(_write_batch(uow, principal, good, suppression) if good else ())
        for line_no, submission, errors in batch:
            yield next(written) if submission else Outcome(line_no, "rejected", errors=errors)


def _consent_allowed(line: CheckedLine, principal: Principal, lists) -> CheckedLine:
    """The line, or its rejection when it brings newsletter consent over that this site
    may not give (its key may not manage that list, as for a subscription) or for a list
    that is no longer sent."""
    line_no, submission, _ = line
    if submission is None or not submission.newsletters:
        return line
    keys = {key for key, _, _ in submission.newsletters}
    barred = sorted(key for key in keys if not principal.site.may_manage(key))
    if barred:
        reason = (
            f"this site key may not manage {', '.join(barred)}: bringing consent over takes"
            " the scope newsletters or newsletters:<list>, as a subscription does"
        )
        return line_no, None, {"newsletters": [reason]}
    retired = sorted(keys - lists)
    if retired:
        return line_no, None, {"newsletters": [f"no longer sent: {', '.join(retired)}"]}
    return line


def _write_batch(
    uow: UnitOfWork,
    principal: Principal,
    good: list[tuple[int, Submission]],
    suppression: Suppression,
) -> list[Outcome]:
    """The batch in one transaction; should the database refuse a value that passed every
    check (a bug, but not one to stop an import for), line by line, rejecting that line."""
    try:
        return uow.run(lambda: record_profiles(uow.conn, principal, good, suppression))
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError):
        return [_write_line(uow, principal, line, suppression) for line in good]


def _write_line(
    uow: UnitOfWork, principal: Principal, line: tuple[int, Submission], suppression: Suppression
) -> Outcome:
    try:
        return uow.run(lambda: record_profiles(uow.conn, principal, [line], suppression))[0]
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
        return Outcome(line[0], "rejected", errors={"line": [f"not storable ({exc.sqlstate})"]})


def get_user(uow: UnitOfWork, user_id: UUID) -> dict:
    user = store.get_by_id(uow.one_statement, user_id)
    if user is None:
        raise NotFound("no record with this id")
    return user


def find_user_by_email(uow: UnitOfWork, address: str) -> dict:
    user = store.get_by_email(uow.one_statement, email_key(normalise_email(address)))
    if user is None:
        raise NotFound("no record with this email address")
    return user
