"""scripts/audit.py's verdict on pip-audit's report: only a full check passes."""

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "audit.py"
spec = importlib.util.spec_from_file_location("audit", SCRIPT)
audit = importlib.util.module_from_spec(spec)
spec.loader.exec_module(audit)

CLEAN = {"name": "flask", "version": "3.1.3", "vulns": []}
SKIPPED = {
    "name": "apispec",
    "skip_reason": "Dependency not found on PyPI and could not be audited: apispec (6.10.1)",
}


def test_every_package_checked_and_clean_passes():
    assert audit.verdict({"dependencies": [CLEAN]}) == (
        0,
        ["1 packages checked, no known vulnerability"],
    )


def test_a_package_that_could_not_be_checked_fails_even_with_no_vulnerability_found():
    """What pip-audit reports offline, with exit 0: every package skipped."""
    code, lines = audit.verdict({"dependencies": [CLEAN, SKIPPED]})
    assert code == audit.NOT_CHECKED
    assert lines[0].startswith("1 of 2 packages could not be checked")


def test_a_vulnerability_fails_and_names_its_fix():
    vulnerable = {
        "name": "werkzeug",
        "version": "3.0.0",
        "vulns": [{"id": "GHSA-xxxx", "fix_versions": ["3.0.6"], "aliases": []}],
    }
    assert audit.verdict({"dependencies": [CLEAN, vulnerable]}) == (
        audit.VULNERABLE,
        ["werkzeug 3.0.0: GHSA-xxxx, fixed in 3.0.6"],
    )
