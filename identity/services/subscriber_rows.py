"""The rows of a subscriber export as bytes, NDJSON or CSV, a batch at a time: fixed
pieces around each row's user id, address and unsubscribe token (in its unsubscribe URL,
its List-Unsubscribe value and its preferences URL), put together by slices and joins (no
Python per field), and the closing line of a whole answer."""

import json
import re

from identity.security.unsubscribe_tokens import TOKEN_LENGTH

LIST_UNSUBSCRIBE_POST = "List-Unsubscribe=One-Click"


class _Rows:
    """How a row is written: fixed bytes around its user id, its address and its token
    (three times: the one-click URL, the List-Unsubscribe value, the preferences page;
    the first two on IDENTITY_PUBLIC_URL, the third on the list's site's pages, each the
    same for every row of an export). `lines` puts a batch's rows together by slice
    assignment and one join per _PART_ROWS rows: C loops, no Python per field. Addresses
    need no escaping in either format (the record keeps no quote, backslash or control
    character in one); should one ever hold a quote or a backslash, that batch's
    addresses are escaped one by one."""

    parts: tuple[bytes, ...]

    def lines(self, user_ids: bytes, emails: bytes, tokens: bytes) -> list[bytes]:
        """The batch's lines, _PART_ROWS rows to a piece."""
        addresses = emails.split(_SEPARATOR)
        if self.must_escape(emails):
            addresses = [self.escape(address) for address in addresses]
        return [
            self._part(
                user_ids[start * UUID_TEXT : (start + _PART_ROWS) * UUID_TEXT],
                addresses[start : start + _PART_ROWS],
                tokens[start * TOKEN_LENGTH : (start + _PART_ROWS) * TOKEN_LENGTH],
            )
            for start in range(0, len(addresses), _PART_ROWS)
        ]

    def _part(self, user_ids: bytes, addresses: list[bytes], tokens: bytes) -> bytes:
        n = len(addresses)
        ids = [user_ids[i : i + UUID_TEXT] for i in range(0, n * UUID_TEXT, UUID_TEXT)]
        each = [tokens[i : i + TOKEN_LENGTH] for i in range(0, n * TOKEN_LENGTH, TOKEN_LENGTH)]
        first, after_id, after_email, between, before_page, last = self.parts
        row: list = [None] * (11 * n)
        row[0::11] = [first] * n
        row[1::11] = ids
        row[2::11] = [after_id] * n
        row[3::11] = addresses
        row[4::11] = [after_email] * n
        row[5::11] = each
        row[6::11] = [between] * n
        row[7::11] = each
        row[8::11] = [before_page] * n
        row[9::11] = each
        row[10::11] = [last] * n
        return b"".join(row)

    @staticmethod
    def must_escape(emails: bytes) -> bool:
        return b'"' in emails or b"\\" in emails

    @staticmethod
    def complete(rows: int) -> bytes:
        """The last line of a whole answer, with the number of rows before it."""
        raise NotImplementedError

    @staticmethod
    def escape(address: bytes) -> bytes:
        raise NotImplementedError


class JsonRows(_Rows):
    """`base`: the unsubscribe URL without its token; `preferences`: the preferences
    page's URL without its token (`{pages}/newsletters/preferences?token=`)."""

    def __init__(self, base: str, preferences: str):
        url = json.dumps(base)[1:-1].encode()
        page = json.dumps(preferences)[1:-1].encode()
        self.parts = (
            b'{"user_id":"',
            b'","email":"',
            b'","unsubscribe_url":"' + url,
            b'","list_unsubscribe":"<' + url,
            b'>","list_unsubscribe_post":"'
            + LIST_UNSUBSCRIBE_POST.encode()
            + b'","preferences_url":"'
            + page,
            b'"}\n',
        )

    @staticmethod
    def escape(address: bytes) -> bytes:
        return json.dumps(address.decode(), ensure_ascii=False)[1:-1].encode()

    @staticmethod
    def complete(rows: int) -> bytes:
        return b'{"complete":true,"rows":%d}\n' % rows


class CsvRows(_Rows):
    """As JsonRows, in the columns of CSV_HEADER."""

    def __init__(self, base: str, preferences: str):
        url = base.replace('"', '""').encode()
        page = preferences.replace('"', '""').encode()
        self.parts = (
            b"",
            b',"',
            b'","' + url,
            b'","<' + url,
            b'>",' + LIST_UNSUBSCRIBE_POST.encode() + b',"' + page,
            b'"\r\n',
        )

    @staticmethod
    def must_escape(emails: bytes) -> bool:
        return _Rows.must_escape(emails) or _FORMULA.search(emails) is not None

    @staticmethod
    def complete(rows: int) -> bytes:
        return COMPLETE_CSV_ROW % rows

    @staticmethod
    def escape(address: bytes) -> bytes:
        # A cell a spreadsheet would take for a formula (=1+1@example.com is a valid
        # address) gets a leading ' (OWASP's advice for CSV injection); so does one that
        # starts with ' itself, so that taking one leading ' away always gives the
        # address back ('-x@example.com and -x@example.com are two people).
        quoted = address.replace(b'"', b'""')
        return b"'" + quoted if quoted[:1] in _ESCAPED_STARTS else quoted


# What starts a formula in a spreadsheet's cell, and the escape itself.
_ESCAPED_STARTS = (b"=", b"+", b"-", b"@", b"'")
_FORMULA = re.compile(rb"(?:^|\x01)[=+\-@']")
# A user id as text.
UUID_TEXT = 36
# Rows to a piece of the export's output: a few hundred kilobytes.
_PART_ROWS = 2_000
# Between addresses: a byte no address holds (the record keeps no control characters).
_SEPARATOR = b"\x01"
CSV_HEADER = (
    "user_id,email,unsubscribe_url,list_unsubscribe,list_unsubscribe_post,preferences_url\r\n"
)
# A whole CSV answer's last row: `#complete` for a user id, the number of rows before it
# (the header not counted) for an address. No user id starts with `#`.
COMPLETE_CSV_ROW = b"#complete,%d,,,,\r\n"
