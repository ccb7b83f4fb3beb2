"""Reading an import's body: numbered lines, NDJSON, CSV records and their header, batches."""

import io

import pytest

from identity.errors import EmptyImport, InvalidInput, TooManyImportLines
from identity.imports.reading import (
    MAX_LINE_BYTES,
    LongLine,
    in_batches,
    numbered_lines,
    read_csv,
    read_ndjson,
)

COLUMNS = {"email", "source", "first_name", "last_name", "phone", "country"}
TOO_LONG = {"line": [f"longer than {MAX_LINE_BYTES} bytes"]}
AFTER_CLOSING_QUOTE = (
    "not valid CSV: text after the closing quote of a cell; double a quote inside one"
)


def lines_of(body: bytes, max_lines: int = 100) -> list:
    return list(numbered_lines(io.BytesIO(body), max_lines))


def ndjson(body: bytes) -> list:
    return list(read_ndjson(numbered_lines(io.BytesIO(body), 100)))


def csv(body: str | bytes) -> list:
    if isinstance(body, str):
        body = body.encode()
    return list(read_csv(numbered_lines(io.BytesIO(body), 100), COLUMNS))


def test_lines_are_numbered_from_one_with_their_line_ends():
    assert lines_of(b"a\r\nb\n\nc") == [(1, b"a\r\n"), (2, b"b\n"), (3, b"\n"), (4, b"c")]


def test_a_body_without_one_byte_is_an_empty_import():
    with pytest.raises(EmptyImport):
        lines_of(b"")


def test_a_line_past_the_limit_stops_the_reading_after_the_lines_before_it():
    lines = numbered_lines(io.BytesIO(b"a\nb\nc\n"), max_lines=2)
    assert [next(lines), next(lines)] == [(1, b"a\n"), (2, b"b\n")]
    with pytest.raises(TooManyImportLines, match="at most 2 lines"):
        next(lines)


def test_a_line_too_long_is_read_past_and_the_next_one_taken():
    long = b"x" * (3 * MAX_LINE_BYTES)
    assert lines_of(long + b"\nnext\n") == [(1, LongLine(True, False)), (2, b"next\n")]
    # A line of exactly the limit, line end included, is taken.
    exact = b"y" * (MAX_LINE_BYTES - 1) + b"\n"
    assert lines_of(exact) == [(1, exact)]


def test_a_long_line_says_whether_it_ends_in_a_quoted_cell():
    # A quote at a cell's start opens a cell; inside an open one, it closes it.
    opens = b'a,"' + b"x" * MAX_LINE_BYTES + b"\n"
    assert lines_of(opens) == [(1, LongLine(quoted_after_quoted=False, quoted_after_unquoted=True))]


def test_ndjson_lines_are_kept_as_bytes_and_blank_ones_left_out():
    assert ndjson(b'{"email": "a@example.com"}\n\n  \r\n{"x": 1}') == [
        (1, b'{"email": "a@example.com"}\n', None),
        (4, b'{"x": 1}', None),
    ]


def test_a_byte_order_mark_before_the_first_ndjson_line_is_left_out_and_nowhere_else():
    bom = "\ufeff".encode()
    assert ndjson(bom + b"{}\n" + bom + b"{}\n") == [(1, b"{}\n", None), (2, bom + b"{}\n", None)]


def test_an_ndjson_line_too_long_is_rejected_alone():
    body = b'{"first_name": "' + b"x" * MAX_LINE_BYTES + b'"}\n{}\n'
    assert ndjson(body) == [(1, None, TOO_LONG), (2, b"{}\n", None)]


def test_a_csv_record_is_read_by_its_header_and_empty_cells_are_left_out():
    body = (
        "\ufeffEmail, First_Name ,last_name\r\n"
        "anna@example.com,Anna,\r\n"
        "\r\n"
        "bob@example.com,,Smit\r\n"
    )
    assert csv(body) == [
        (2, {"email": "anna@example.com", "first_name": "Anna"}, None),
        (4, {"email": "bob@example.com", "last_name": "Smit"}, None),
    ]


def test_a_quoted_csv_cell_may_hold_line_breaks_commas_and_doubled_quotes():
    body = (
        "email,first_name,last_name\n"
        'anna@example.com,"Anna\r\nMarie","Berg, ""Jr."""\n'
        "bob@example.com,Bob,Smit\n"
    )
    assert csv(body) == [
        (
            2,
            {
                "email": "anna@example.com",
                "first_name": "Anna\r\nMarie",
                "last_name": 'Berg, "Jr."',
            },
            None,
        ),
        (4, {"email": "bob@example.com", "first_name": "Bob", "last_name": "Smit"}, None),
    ]


def test_a_quote_inside_an_unquoted_csv_cell_is_a_character_and_swallows_no_line():
    body = 'email,first_name\nbob@example.com,Robert "Bob\ncarl@example.com,Carl\n'
    assert csv(body) == [
        (2, {"email": "bob@example.com", "first_name": 'Robert "Bob'}, None),
        (3, {"email": "carl@example.com", "first_name": "Carl"}, None),
    ]


def test_a_bad_csv_record_is_rejected_alone_with_its_reason():
    body = (
        b"email,first_name\n"
        b"a@example.com\n"  # one cell short
        b'b@example.com,"Bob"by\n'  # text after the closing quote
        b"c@example.com,\xff\n"  # not UTF-8
        b"d@example.com,Dirk\n"
    )
    read = csv(body)
    assert [line_no for line_no, _, _ in read] == [2, 3, 4, 5]
    assert read[0][2] == {"line": ["1 cells; the header names 2"]}
    assert read[1][2] == {"line": [AFTER_CLOSING_QUOTE]}
    assert read[2][2] == {"line": ["not UTF-8"]}
    assert read[3] == (5, {"email": "d@example.com", "first_name": "Dirk"}, None)


def test_a_csv_record_too_long_is_rejected_alone_even_when_its_quoted_cell_spans_lines():
    spread = ("B" * (MAX_LINE_BYTES // 2) + "\n") * 3
    body = f'email,first_name\nbob@example.com,"{spread}"\ncarl@example.com,Carl\n'
    assert csv(body) == [
        (2, None, TOO_LONG),
        (6, {"email": "carl@example.com", "first_name": "Carl"}, None),
    ]


def test_a_quoted_csv_cell_never_closed_takes_the_rest_of_the_body():
    body = 'email,first_name\nanna@example.com,"Anna\nbob@example.com,Bob\n'
    assert csv(body) == [(2, None, {"line": ["a quoted cell is never closed"]})]


@pytest.mark.parametrize(
    ("header", "problems"),
    [
        ("first_name,last_name", ["no email column"]),
        ("email,shoe_size", ["unknown column 'shoe_size'"]),
        ("email,Email", ["column 'email' is named more than once"]),
        ('email,"first_name"x', [AFTER_CLOSING_QUOTE]),
    ],
)
def test_a_csv_header_must_name_known_columns_once_each_email_among_them(header, problems):
    with pytest.raises(InvalidInput) as refused:
        csv(header + "\nanna@example.com,Anna\n")
    assert refused.value.errors == {"header": problems}


def test_lines_come_in_batches_of_the_size_asked_the_last_one_shorter():
    assert list(in_batches(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(in_batches([], 3)) == []
