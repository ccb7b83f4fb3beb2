"""Reading an import's body as it streams in: numbered lines, NDJSON lines left for the
helpers to parse, CSV records cut into cells by a header row, and batches of them."""

import csv
import io
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from identity.errors import EmptyImport, InvalidInput, TooManyImportLines

# A longer line (or CSV record) is rejected on its own rather than read into memory.
MAX_LINE_BYTES = 64 * 1024
_BOM = "\ufeff".encode()
_READ_SIZE = 256 * 1024

_TOO_LONG = {"line": [f"longer than {MAX_LINE_BYTES} bytes"]}

# A line as read: (line number, its fields (CSV) or its JSON text (NDJSON, parsed where
# it is checked), None), or (line number, None, why not).
ReadLine = tuple[int, dict | bytes | None, dict | None]


@dataclass(frozen=True)
class LongLine:
    """A line too long to take, read past and dropped. For CSV: whether a quoted cell
    is open at its end, if one was open at its start, and if not."""

    quoted_after_quoted: bool
    quoted_after_unquoted: bool


def numbered_lines(stream: io.RawIOBase, max_lines: int) -> Iterator[tuple[int, bytes | LongLine]]:
    """(line number, bytes) of a binary stream, or a LongLine for a line too long to take;
    EmptyImport for a stream without one byte, TooManyImportLines past `max_lines`."""
    reader = io.BufferedReader(stream, buffer_size=_READ_SIZE)
    line_no = 0
    while True:
        raw = reader.readline(MAX_LINE_BYTES + 1)
        if not raw:
            if line_no == 0:
                raise EmptyImport("send the lines in the body: NDJSON or CSV with a header row")
            return
        line_no += 1
        if line_no > max_lines:
            raise TooManyImportLines(f"an import takes at most {max_lines} lines")
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            # Whether it ends in a quoted cell depends on whether it starts in one.
            after_quoted, after_unquoted, starts_cell = True, False, True
            while raw:
                after_quoted = _still_quoted(raw, after_quoted, starts_cell)
                after_unquoted = _still_quoted(raw, after_unquoted, starts_cell)
                if raw.endswith(b"\n"):
                    break
                starts_cell = raw.endswith(b",")
                raw = reader.readline(MAX_LINE_BYTES)
            yield line_no, LongLine(after_quoted, after_unquoted)
            continue
        yield line_no, raw


def read_ndjson(lines: Iterable[tuple[int, bytes | LongLine]]) -> Iterator[ReadLine]:
    """The lines that are not blank, as they came: parsing them is the helpers' work. A
    byte order mark before the first line (Windows tools write one) is not part of it."""
    for line_no, raw in lines:
        if line_no == 1 and isinstance(raw, bytes) and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if isinstance(raw, LongLine):
            yield line_no, None, _TOO_LONG
        elif raw.strip():
            yield line_no, raw, None


def read_csv(
    lines: Iterable[tuple[int, bytes | LongLine]], columns: Collection[str]
) -> Iterator[ReadLine]:
    """Each record after the header row as {column: cell}, empty cells left out. The
    header must name some of `columns`, each once, email among them (InvalidInput)."""
    records = _csv_records(lines)
    header = _csv_header(next(records, (1, b"", None)), columns)
    # One reader over whole records: a record that is not valid CSV fails alone, and the
    # reader starts afresh on the next one.
    current: list = [None]

    def texts():
        for line_no, text, errors in records:
            current[0] = (line_no, errors)
            yield text

    reader = csv.reader(texts(), strict=True)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield current[0][0], None, {"line": [_csv_reason(exc)]}
            continue
        line_no, errors = current[0]
        if errors:
            yield line_no, None, errors
            continue
        if not row:
            continue
        if len(row) != len(header):
            yield line_no, None, {"line": [f"{len(row)} cells; the header names {len(header)}"]}
            continue
        yield line_no, {name: value for name, value in zip(header, row, strict=True) if value}, None


def in_batches(lines: Iterable[ReadLine], size: int) -> Iterator[list[ReadLine]]:
    """The lines in lists of `size` (the last one shorter)."""
    lines = iter(lines)
    while batch := list(islice(lines, size)):
        yield batch


def _csv_records(
    lines: Iterable[tuple[int, bytes | LongLine]],
) -> Iterator[tuple[int, str, dict | None]]:
    """Whole CSV records: (first line number, text, None), or (line number, "", why not).

    A quoted cell may hold line breaks, so a record ends at the first line end outside a
    quoted cell. Only a quote at the start of a cell opens one (RFC 4180); a quote inside
    an unquoted cell is a character like any other, as the csv module reads it, so a
    stray `Robert "Bob` cannot swallow the lines after it. A record over MAX_LINE_BYTES
    is rejected and skipped to its end, so a long cell cannot turn the rows after it
    into cells; a quote never closed takes the rest of the body with it.
    """
    parts: list[bytes] = []
    first = size = 0
    quoted = oversized = False
    for line_no, raw in lines:
        if not parts and not oversized:
            first = line_no
        if isinstance(raw, LongLine):
            oversized = True
            quoted = raw.quoted_after_quoted if quoted else raw.quoted_after_unquoted
        else:
            size += len(raw)
            oversized = oversized or size > MAX_LINE_BYTES
            if quoted or b'"' in raw:
                quoted = _still_quoted(raw, quoted)
            parts.append(raw)
        if oversized:
            parts.clear()
        if quoted:
            continue
        if oversized:
            yield first, "", _TOO_LONG
        else:
            try:
                yield first, b"".join(parts).decode("utf-8"), None
            except UnicodeDecodeError:
                yield first, "", {"line": ["not UTF-8"]}
        parts, size, oversized = [], 0, False
    if parts or oversized:
        yield first, "", {"line": ["a quoted cell is never closed"]}


_CELL_START = frozenset(b",\n")


def _still_quoted(line: bytes, quoted: bool, starts_cell: bool = True) -> bool:
    """Whether a quoted cell is still open at the end of this line, given whether one
    was open at its start. For a line read in pieces, `starts_cell` says whether this
    piece begins a cell (the one before ended in a comma). (A doubled quote split across
    two pieces may be misread; such a line is rejected anyway.)"""
    at = line.find(b'"')
    while at != -1:
        if quoted:
            if line[at + 1 : at + 2] == b'"':  # a doubled quote: one quote in the cell
                at = line.find(b'"', at + 2)
                continue
            quoted = False  # closed; text after it is the csv module's to refuse
        elif (line[at - 1] in _CELL_START) if at else starts_cell:
            quoted = True
        at = line.find(b'"', at + 1)
    return quoted


def _csv_reason(error: csv.Error) -> str:
    """The csv module's complaint in the words of someone writing a CSV file."""
    text = str(error)
    if "new-line character" in text:
        return "not valid CSV: a line break inside an unquoted cell; lines end in LF or CRLF"
    if "expected after" in text:
        return "not valid CSV: text after the closing quote of a cell; double a quote inside one"
    return "not valid CSV"


def _csv_header(record: tuple[int, str, dict | None], columns: Collection[str]) -> list[str]:
    _, text, errors = record
    try:
        row = next(csv.reader([text], strict=True), []) if errors is None else None
    except csv.Error as exc:
        row, errors = None, {"line": [_csv_reason(exc)]}
    if row is None:
        raise InvalidInput(
            "the first CSV row must name the columns, one of them email; lines end in LF or CRLF",
            errors={"header": errors["line"]},
        )
    header = [cell.strip().lstrip("\ufeff").lower() for cell in row]
    problems = [f"unknown column {name!r}" for name in header if name not in columns]
    problems += [
        f"column {name!r} is named more than once"
        for name in sorted({name for name in header if header.count(name) > 1})
    ]
    if "email" not in header:
        problems.append("no email column")
    if problems:
        raise InvalidInput(
            "the first CSV row must name the columns, one of them email",
            errors={"header": problems},
        )
    return header
