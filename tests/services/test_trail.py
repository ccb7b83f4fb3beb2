"""The trail's own events (those that are not security events) are one table in
docs/events.md and every call that writes one names it there; a row says who acted on
whose record without an address."""

import ast
import re
from pathlib import Path

from identity.services import trail
from identity.services.principal import Principal, SiteCaller, UserCaller

PROJECT_DIR = Path(__file__).resolve().parents[2]
WRITERS = {"record": 1, "note": 0, "record_many": 1}


def _written() -> dict[str, list[str]]:
    """Every event name passed to trail.record / trail.note / trail.record_many."""
    found: dict[str, list[str]] = {}
    for path in sorted((PROJECT_DIR / "identity").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            func = getattr(node, "func", None)
            if not (
                isinstance(func, ast.Attribute)
                and func.attr in WRITERS
                and isinstance(func.value, ast.Name)
                and func.value.id == "trail"
            ) and not (isinstance(func, ast.Name) and func.id == "record_many"):
                continue
            name = func.attr if isinstance(func, ast.Attribute) else func.id
            where = f"{path.relative_to(PROJECT_DIR)}:{node.lineno}"
            event = node.args[WRITERS[name]]
            # Written out, or one of two written out.
            names = [event.body, event.orelse] if isinstance(event, ast.IfExp) else [event]
            for each in names:
                assert isinstance(each, ast.Constant), f"{where}: the event's name is written out"
                found.setdefault(each.value, []).append(where)
    return found


def _documented() -> set[str]:
    text = (PROJECT_DIR / "docs" / "events.md").read_text()
    table = text.split("\n## The trail\n", 1)[1]
    names = re.findall(r"^\| (`[a-z_.]+`(?:, `[a-z_.]+`)*) \|", table, re.MULTILINE)
    return {n for cell in names for n in re.findall(r"`([a-z_.]+)`", cell)}


def test_every_trail_event_in_the_code_is_in_the_table_and_every_one_there_is_used():
    written, documented = _written(), _documented()
    assert set(written) == documented, (set(written) ^ documented, written)


def test_an_entry_names_the_actor_and_the_subject_but_no_address():
    site = Principal(site=SiteCaller("a" * 32, "copernica.com", "b" * 32, frozenset()))
    row = trail.entry("profile.created", site, "u-1", source="event", fields=["first_name"])
    assert (row["actor"], row["actor_id"], row["subject_id"], row["site"]) == (
        "site",
        None,
        "u-1",
        "copernica.com",
    )
    assert row["details"] == {"source": "event", "fields": ["first_name"]}
    staff = Principal(user=UserCaller("s-1", "copernica.com", "x", None, {"staff_role": "dpo"}))
    assert trail.entry("staff.read", staff, "u-1")["actor"] == "staff"
    # A staff member's own record is theirs as anyone's; none names no one.
    assert trail.entry("x", staff)["actor"] == "person"
    assert trail.entry("x", staff, None)["subject_id"] is None
