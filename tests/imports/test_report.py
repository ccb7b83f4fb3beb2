"""An import's report: a JSON line per outcome, a summary line, and how a stop is told."""

import json
from uuid import UUID

import pytest

from identity.errors import EmptyImport, ImportStopped, InvalidInput
from identity.imports.report import report_line, spooled_report
from identity.services.profiles import Outcome

ANNA = UUID("7d5c3f0e-2b1a-4c8e-9f6d-0a1b2c3d4e5f")


def test_each_outcome_is_one_json_line():
    lines = [
        report_line(Outcome(1, "created", ANNA, filled=("first_name",))),
        report_line(Outcome(2, "merged", ANNA, newsletters_kept=("copernica",))),
        report_line(Outcome(3, "rejected", errors={"email": ['no "@"'], "line": ["x"]})),
    ]
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    assert [json.loads(line) for line in lines] == [
        {"line": 1, "status": "created", "id": str(ANNA)},
        {"line": 2, "status": "merged", "id": str(ANNA), "newsletters_kept": ["copernica"]},
        {"line": 3, "status": "rejected", "errors": {"email": ['no "@"'], "line": ["x"]}},
    ]


def test_the_report_ends_in_a_summary_of_every_status():
    outcomes = [Outcome(1, "created", ANNA), Outcome(3, "rejected", errors={"line": ["x"]})]
    lines = b"".join(spooled_report(outcomes)).splitlines()
    assert [json.loads(line) for line in lines[:-1]] == [
        {"line": 1, "status": "created", "id": str(ANNA)},
        {"line": 3, "status": "rejected", "errors": {"line": ["x"]}},
    ]
    summary = {"lines": 2, "created": 1, "merged": 0, "rejected": 1}
    assert json.loads(lines[-1]) == {"summary": summary}
    nothing = {"lines": 0, "created": 0, "merged": 0, "rejected": 0}
    assert json.loads(b"".join(spooled_report([]))) == {"summary": nothing}


def test_a_report_past_a_megabyte_comes_back_whole_in_pieces():
    outcomes = (Outcome(n, "merged", ANNA) for n in range(1, 30_001))
    pieces = list(spooled_report(outcomes))
    assert len(pieces) > 1
    lines = b"".join(pieces).splitlines()
    assert len(lines) == 30_001 and json.loads(lines[29_999])["line"] == 30_000


def test_an_import_that_stops_part_way_says_through_which_line_it_is_done():
    stop = ConnectionError("the database went away")

    def outcomes():
        yield Outcome(1, "created", ANNA)
        yield Outcome(4, "rejected", errors={"line": ["x"]})
        raise stop

    with pytest.raises(ImportStopped) as stopped:
        spooled_report(outcomes())
    assert stopped.value.cause is stop and stopped.value.lines_done == 4


@pytest.mark.parametrize("refusal", [EmptyImport("no line"), InvalidInput("bad header")])
def test_an_import_refused_before_its_first_line_is_not_a_stop(refusal):
    def outcomes():
        raise refusal
        yield

    with pytest.raises(type(refusal)) as raised:
        spooled_report(outcomes())
    assert raised.value is refusal
