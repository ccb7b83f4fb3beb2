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
# Unicode's whole Bidi_Control set: the marks (ALM, LRM, RLM) as well.
_BIDI = r"\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# Characters that show nothing, or break a line where none may be: a zero-width space or
# a byte order mark makes two names look alike that are not. (ZWJ and ZWNJ stay: Persian
# and Indic names and emoji need them.)
_INVISIBLE = r"\u200b\u2028\u2029\ufeff"
# Unicode's noncharacters, never for interchange; those past U+FFFF, and the tag
# characters (invisible ASCII look-alikes), are left out of the pattern as surrogates are.
_NONCHARACTERS = r"\ufdd0-\ufdef\ufffe\uffff"
_ASTRAL = "\U000e0000-\U000e007f" + "".join(
    f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(1, 17)
)
_ANYWHERE = f"{_SURROGATES}{_BIDI}{_INVISIBLE}{_NONCHARACTERS}{_ASTRAL}"
_FORBIDDEN = re.compile(f"[{_CONTROLS}{_ANYWHERE}]")
_FORBIDDEN_MULTILINE = re.compile(f"[{_CONTROLS_MULTILINE}{_ANYWHERE}]")


class Text(fields.String):
    """A string in NFC, trimmed, at most `max_length` characters, with no control
    characters, lone surrogates, bidi controls, invisible characters or noncharacters.
    Blank text loads as ""."""

    default_error_messages = {
        "too_long": "Longer than {max_length} characters.",
        "forbidden": "Contains U+{code:04X} ({what}); send plain text.",
    }

    def __init__(self, *, max_length: int, multiline: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length
        self.forbidden = _FORBIDDEN_MULTILINE if multiline else _FORBIDDEN
        self.metadata.setdefault("maxLength", max_length)
        controls = _CONTROLS_MULTILINE if multiline else _CONTROLS
        self.metadata.setdefault("pattern", f"^[^{controls}{_BIDI}{_INVISIBLE}{_NONCHARACTERS}]*$")

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
        return value if value.isascii() else unicodedata.normalize("NFC", value).strip()


def _what(code: int) -> str:
    if 0xD800 <= code <= 0xDFFF:
        return "a lone surrogate, not valid Unicode"
    if code in (0x2028, 0x2029):
        return "a line break"
    if re.fullmatch(f"[{_BIDI}]", chr(code)):
        return "a bidi control character"
    if code in (0x200B, 0xFEFF) or 0xE0000 <= code <= 0xE007F:
        return "an invisible character"
    if code >= 0xFDD0:
        return "a noncharacter"
    return "a control character"
