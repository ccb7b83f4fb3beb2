"""Free text as the record keeps it: the one validator every free-text field goes through."""

import re
import unicodedata

from marshmallow import fields

# What no stored text may hold: C0 and C1 control characters (NUL among them), lone
# surrogates (not Unicode at all: PostgreSQL cannot store them), and the bidi embeddings,
# overrides and isolates of Unicode TR 9, which make "Anna\u202egreB" display as another
# name than the one stored. Multi-line text may hold line feeds and tabs. Written as regex
# escapes, so the OpenAPI document can say the same as a `pattern`; lone surrogates are
# left out there, as a JSON Schema pattern cannot name them (nor can valid UTF-8 hold them).
_CONTROLS = r"\x00-\x1f\x7f-\x9f"
_CONTROLS_MULTILINE = r"\x00-\x08\x0b-\x1f\x7f-\x9f"
_SURROGATES = r"\ud800-\udfff"
_BIDI = r"\u202a-\u202e\u2066-\u2069"
_FORBIDDEN = re.compile(f"[{_CONTROLS}{_SURROGATES}{_BIDI}]")
_FORBIDDEN_MULTILINE = re.compile(f"[{_CONTROLS_MULTILINE}{_SURROGATES}{_BIDI}]")


class Text(fields.String):
    """A string in NFC, trimmed, at most `max_length` characters, with no control
    characters, lone surrogates or bidi controls. Blank text loads as "", unless
    `blank=False`, which refuses it (and says so in the document's pattern)."""

    default_error_messages = {
        "too_long": "Longer than {max_length} characters.",
        "forbidden": "Contains U+{code:04X} ({what}); send plain text.",
        "blank": "Blank; send some text.",
    }

    def __init__(self, *, max_length: int, multiline: bool = False, blank: bool = True,
                 **kwargs):  # fmt: skip
        super().__init__(**kwargs)
        self.max_length = max_length
        self.blank = blank
        self.forbidden = _FORBIDDEN_MULTILINE if multiline else _FORBIDDEN
        self.metadata.setdefault("maxLength", max_length)
        controls = _CONTROLS_MULTILINE if multiline else _CONTROLS
        allowed = f"[^{controls}{_BIDI}]*"
        visible = "" if blank else rf"[^\s{controls}{_BIDI}]{allowed}"
        self.metadata.setdefault("pattern", f"^{allowed}{visible}$")

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        value = super()._deserialize(value, attr, data, **kwargs)
        bad = self.forbidden.search(value)
        if bad:
            code = ord(bad.group())
            raise self.make_error("forbidden", code=code, what=_what(code))
        value = value.strip()
        # The limit is on what the client sent, as the document says (maxLength): NFC
        # may make text longer (U+0958 becomes two characters), never by much.
        if len(value) > self.max_length:
            raise self.make_error("too_long", max_length=self.max_length)
        if not value and not self.blank:
            raise self.make_error("blank")
        return value if value.isascii() else unicodedata.normalize("NFC", value).strip()


def _what(code: int) -> str:
    if 0xD800 <= code <= 0xDFFF:
        return "a lone surrogate, not valid Unicode"
    if code >= 0x202A:
        return "a bidi control character"
    return "a control character"
