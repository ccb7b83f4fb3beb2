"""The security events' vocabulary is one list, in the code and in docs/events.md; a line
costs nothing with INFO off; an operator's changes are events too, without an address."""

import ast
import json
import logging
import re
from pathlib import Path

import pytest

from identity import logs
from identity.services import security_events
from identity.services.accounts.sessions import end_every_sign_in, end_sign_ins_of
from identity.services.security_events import EVENTS, security_event
from identity.services.sites import revoke_site_keys
from identity.store.transactions import UnitOfWork
from tests.api.test_accounts import login, sign_up
from tests.sites import site_key_for

PROJECT_DIR = Path(__file__).resolve().parents[2]


def _called() -> dict[str, list[str]]:
    """Every event name the code passes to security_event, with where; each name must be
    written out there, so this can see it."""
    found: dict[str, list[str]] = {}
    for path in sorted((PROJECT_DIR / "identity").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name != "security_event":
                continue
            where = f"{path.relative_to(PROJECT_DIR)}:{node.lineno}"
            first = node.args[0] if node.args else None
            assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                f"{where}: the event's name is written out"
            )
            found.setdefault(first.value, []).append(where)
    return found


def _documented() -> list[str]:
    text = (PROJECT_DIR / "docs" / "events.md").read_text()
    table = text.split("\n## The events\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_.]+)` \|", table, re.MULTILINE)


def test_every_event_in_the_code_is_in_the_table_and_every_one_there_is_used():
    called, documented = _called(), _documented()
    assert len(documented) == len(set(documented)), "a name twice in the table"
    assert set(documented) == EVENTS
    assert set(called) <= EVENTS, {name: called[name] for name in set(called) - EVENTS}
    assert set(called) == EVENTS, EVENTS - set(called)
    for name in EVENTS:
        assert re.fullmatch(r"[a-z_]+\.[a-z_]+", name), name


def test_with_info_off_nothing_is_built(monkeypatch, capsys):
    logs.configure()

    def who(principal):
        raise AssertionError("built although nothing is written")

    monkeypatch.setattr(security_events, "_who", who)
    level = security_events.log.level
    security_events.log.setLevel(logging.WARNING)
    try:
        security_event("login.failed", None, user_id="u")
    finally:
        security_events.log.setLevel(level)
    assert "login.failed" not in capsys.readouterr().err


@pytest.fixture
def logged(capsys):
    """The events written to stderr since the last look."""
    logs.configure()

    def events(*names: str) -> list[dict]:
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
        return [line for line in lines if line.get("event") in names]

    return events


def test_an_operator_ending_sign_ins_is_an_event_without_the_address(site, conn, logged):
    user = sign_up(site, conn, "zebedee@example.org")
    login(site, "zebedee@example.org")
    uow = UnitOfWork.of(conn)
    assert end_sign_ins_of(uow, "Zebedee@Example.org") == 1
    assert end_every_sign_in(uow) == 0
    person, everyone = logged("sessions.revoked")
    assert (person["user_id"], person["count"], person["by"]) == (user["id"], 1, "operator")
    assert (everyone["user_id"], everyone["count"], everyone["everyone"]) == (None, 0, True)
    for line in (person, everyone):
        assert line["request_id"] is None and line["site"] is None
        assert "zebedee" not in json.dumps(line).lower()


def test_an_operator_issuing_and_revoking_site_keys_is_an_event(conn, logged):
    first = site_key_for(conn, "mailerq.com", ["auth"])
    site_key_for(conn, "mailerq.com", ["users:read"])
    issued = logged("site_key.issued")
    assert [(e["site"], e["key_prefix"], e["scopes"]) for e in issued] == [
        ("mailerq.com", first[:11], ["auth"]),
        ("mailerq.com", issued[1]["key_prefix"], ["users:read"]),
    ]
    uow = UnitOfWork.of(conn)
    assert revoke_site_keys(uow, "mailerq.com", first[:11]) == 1
    assert revoke_site_keys(uow, "mailerq.com", first[:11]) == 0  # nothing: no line
    assert revoke_site_keys(uow, "mailerq.com") == 1
    one, rest = logged("site_key.revoked", "site_key.issued")
    assert (one["key_prefix"], one["count"], rest["key_prefix"], rest["count"]) == (
        first[:11],
        1,
        None,
        1,
    )
    assert all(first[11:] not in json.dumps(line) for line in [*issued, one, rest])
