"""An import's body to its checked lines, in this process or on the helpers; what a helper
process loads."""

import io
import json
from functools import partial

import pytest

from identity import bulk
from identity.imports.pipeline import checked_batches

# Evaluated in a helper, with a batch ({}) as its globals: the modules it has loaded and
# its resident memory in bytes.
_HELPER_STATE = (
    "sorted(__import__('sys').modules),"
    " int(open('/proc/self/status').read().split('VmRSS:')[1].split()[0]) * 1024"
)
# What a helper must not load: the web framework, the database, the other services.
_NOT_IN_A_HELPER = (
    "flask",
    "flask_smorest",
    "werkzeug",
    "gevent",
    "psycopg",
    "psycopg_pool",
    "identity.api",
    "identity.db",
    "identity.mail",
    "identity.store",
    "identity.services.profiles",
    "identity.services.accounts",
    "identity.services.newsletters",
)


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def lines(*rows) -> bytes:
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


def outcomes(body: bytes, *, csv: bool = False, processes: int = 0, batch_size: int = 3) -> list:
    batches = checked_batches(
        io.BytesIO(body),
        csv=csv,
        source="import",
        max_lines=1000,
        batch_size=batch_size,
        processes=processes,
    )
    return [
        (line_no, submission.email if submission else None, errors)
        for batch in batches
        for line_no, submission, errors in batch
    ]


@pytest.mark.parametrize("processes", [0, 2], ids=["in-process", "helper-processes"])
def test_the_lines_come_checked_in_their_order(processes):
    rows = [{"email": f"p{n}@example.com"} if n % 4 else {"email": "bad"} for n in range(20)]
    checked = outcomes(lines(*rows), processes=processes)
    assert [line_no for line_no, _, _ in checked] == list(range(1, 21))
    assert [email for _, email, _ in checked if email] == [
        f"p{n}@example.com" for n in range(20) if n % 4
    ]
    assert all(list(errors) == ["email"] for _, email, errors in checked if email is None)


def test_a_csv_body_is_read_by_its_header():
    body = b"email,first_name\r\nanna@example.com,Anna\r\nbob@,Bob\r\n"
    checked = outcomes(body, csv=True)
    assert checked[0] == (2, "anna@example.com", None)
    assert checked[1][0] == 3 and list(checked[1][2]) == ["email"]


def test_a_helper_process_loads_what_checks_a_line_and_not_flask_or_the_database():
    assert outcomes(lines({"email": "anna@example.com", "phone": "+31201234567"}), processes=2)
    states = list(bulk.in_order(partial(eval, _HELPER_STATE), [{}, {}], 2))
    for modules, rss in states:
        assert "identity.imports.checking" in modules
        loaded = [m for m in modules if _under(m, _NOT_IN_A_HELPER)]
        assert loaded == []
        # The aim; under pytest a helper also loads pytest (its main module).
        assert rss < 100 * 2**20
