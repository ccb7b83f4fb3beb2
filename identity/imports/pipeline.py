"""An import's body to its checked lines: read in this process, checked on the helpers."""

import io
from collections.abc import Iterator
from functools import partial

from identity import bulk
from identity.imports.checking import LINE_FIELDS, check_batch
from identity.imports.reading import in_batches, numbered_lines, read_csv, read_ndjson
from identity.services.submissions import CheckedLine


def checked_batches(
    body: io.RawIOBase,
    *,
    csv: bool,
    source: str,
    max_lines: int,
    batch_size: int,
    processes: int,
) -> Iterator[list[CheckedLine]]:
    """The body's lines (CSV with a header row, or NDJSON) as they stream in, in batches
    of `batch_size`, checked on `processes` helper processes (in this one with 0), in
    their order; `source` for a line that names none. Lazy: the body is read as the
    batches are taken."""
    lines = numbered_lines(body, max_lines)
    read = read_csv(lines, LINE_FIELDS) if csv else read_ndjson(lines)
    return bulk.in_order(
        partial(check_batch, source=source), in_batches(read, batch_size), processes
    )
