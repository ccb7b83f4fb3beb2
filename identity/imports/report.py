"""An import's report: one JSON line per input line's outcome, then a summary line."""

import json
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator

from identity.errors import EmptyImport, ImportStopped, InvalidInput
from identity.metrics import IMPORT_LINES
from identity.services.profiles import Outcome

# The report is kept in memory up to this size, on disk beyond it.
_REPORT_IN_MEMORY = 1024 * 1024
_CHUNK = 64 * 1024


def spooled_report(outcomes: Iterable[Outcome]) -> Iterator[bytes]:
    """The report, written to a file as the outcomes come (on disk past a megabyte), every
    one of them before this returns: an HTTP answer starts only once the request body is
    read to its end. Then its pieces, the file closed after the last.

    An import that stops part-way raises ImportStopped, which says how far it got; one
    without a line (EmptyImport), or whose CSV header is refused (InvalidInput), raises
    that: nothing was read past it, nothing written."""
    counts = Counter()
    spool = tempfile.SpooledTemporaryFile(max_size=_REPORT_IN_MEMORY)  # noqa: SIM115 - see pieces
    last_line = 0
    try:
        for outcome in outcomes:
            counts[outcome.status] += 1
            last_line = outcome.ref
            spool.write(report_line(outcome))
    except (InvalidInput, EmptyImport):
        spool.close()
        raise
    except Exception as exc:
        spool.close()
        raise ImportStopped(exc, last_line) from exc
    finally:
        # Once per import, not per line: what was done counts, a stop part-way too.
        for outcome, lines in counts.items():
            IMPORT_LINES.labels(outcome).inc(lines)
    spool.write(summary_line(counts))
    spool.seek(0)

    def pieces():
        with spool:
            while piece := spool.read(_CHUNK):
                yield piece

    return pieces()


def report_line(outcome: Outcome) -> bytes:
    """One outcome's line: its input line number, status, and the record's id or the
    line's errors; the lists whose consent it left as they were, if any."""
    if outcome.errors:
        line = {"line": outcome.ref, "status": outcome.status, "errors": outcome.errors}
        return json.dumps(line).encode() + b"\n"
    if outcome.newsletters_kept:
        line = {
            "line": outcome.ref,
            "status": outcome.status,
            "id": str(outcome.user_id),
            "newsletters_kept": list(outcome.newsletters_kept),
        }
        return json.dumps(line).encode() + b"\n"
    # Most lines: nothing to escape, so no need for the JSON encoder.
    return b'{"line": %d, "status": "%s", "id": "%s"}\n' % (
        outcome.ref,
        outcome.status.encode(),
        str(outcome.user_id).encode(),
    )


def summary_line(counts: Counter) -> bytes:
    """The last line: how many lines there were, and how many of each status."""
    summary = {"lines": counts.total(), **{s: counts[s] for s in ("created", "merged", "rejected")}}
    return json.dumps({"summary": summary}).encode() + b"\n"
