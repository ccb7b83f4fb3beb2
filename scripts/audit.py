"""`make audit`: pip-audit over a hashed lock, failing unless every package was checked."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

# pip-audit reports a package its vulnerability service did not answer for as skipped, and
# exits 0: offline (here PyPI's JSON API answers 404) that is every package.
NOT_CHECKED = 2
VULNERABLE = 1


def verdict(report: dict) -> tuple[int, list[str]]:
    """The exit code and the lines to print for pip-audit's JSON report."""
    dependencies = report["dependencies"]
    skipped = [d for d in dependencies if "skip_reason" in d]
    if skipped:
        return NOT_CHECKED, [
            f"{len(skipped)} of {len(dependencies)} packages could not be checked, e.g."
            f" {skipped[0]['skip_reason']}",
            "no vulnerability database answered for them (is PyPI's JSON API reachable"
            " from here?): this is no clean result",
        ]
    found = [
        f"{d['name']} {d['version']}: {v['id']}, fixed in {', '.join(v['fix_versions']) or '-'}"
        for d in dependencies
        for v in d["vulns"]
    ]
    if found:
        return VULNERABLE, found
    return 0, [f"{len(dependencies)} packages checked, no known vulnerability"]


def main(lock: str) -> int:
    pip_audit = Path(sys.executable).with_name("pip-audit")
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp) / "report.json"
        # Every package is pinned and hashed: no pip run is needed to find the set.
        command = [
            pip_audit,
            "--requirement",
            lock,
            "--require-hashes",
            "--disable-pip",
            "--progress-spinner",
            "off",
            "--format",
            "json",
            "--output",
            output,
        ]
        # Its own summary would say "No known vulnerabilities found" even then: the verdict
        # below replaces it, and what it said is shown only when it wrote no report.
        run = subprocess.run(command, check=False, capture_output=True, text=True)  # noqa: S603
        if not output.exists():
            # Stopped before any report: offline, a connection error.
            print(run.stdout + run.stderr, file=sys.stderr)
            print("audit: pip-audit wrote no report; nothing was checked", file=sys.stderr)
            return NOT_CHECKED
        code, lines = verdict(json.loads(output.read_text()))
    print("\n".join(f"audit: {line}" for line in lines), file=sys.stderr if code else sys.stdout)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
