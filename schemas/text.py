"""Free text as the record keeps it: the one validator every free-text field goes through."""

import contextlib
import re
import unicodedata

from marshmallow import fields

# What the document says of a field that takes an email address. The service reads an
# address as email-validator does: internationalised local parts and domains too.
EMAIL = {"format": "email"}

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
# Characters that show nothing (Unicode's default-ignorable ones, the Hangul fillers), or
# break a line where none may be: a zero-width space, a soft hyphen or a filler makes two
# names look alike that are not, or a name look blank that is not. (ZWJ and ZWNJ stay:
# Persian and Indic names and emoji need them; so do the variation selectors.)
_INVISIBLE = (
    r"\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b\u2028\u2029"
    r"\u2060-\u2064\u206a-\u206f\u3164\ufeff\uffa0\ufff0-\ufff8"
)
# Unicode's noncharacters, never for interchange; those past U+FFFF, and the tag
# characters (invisible ASCII look-alikes), are left out of the pattern as surrogates are.
_NONCHARACTERS = r"\ufdd0-\ufdef\ufffe\uffff"
# The private-use area of the BMP: characters that mean whatever a font makes of them.
# (Unassigned code points are not refused: they are only unassigned to this Python's
# Unicode version, and next year's emoji among them.)
_PRIVATE_USE = r"\ue000-\uf8ff"
_ASTRAL = "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e007f" + "".join(
    f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(1, 17)
)
_ANYWHERE = f"{_SURROGATES}{_BIDI}{_INVISIBLE}{_NONCHARACTERS}{_PRIVATE_USE}{_ASTRAL}"
# What text that must not be blank must hold more than: white space, and what shows
# nothing on its own (joiners, variation selectors, the combining marks' blocks). The
# same ranges go into the document's pattern.
_SHOWS_NOTHING = (
    r"\s\u0300-\u036f\u0483-\u0489\u064b-\u065f\u0670\u0e31\u0e34-\u0e3a\u0e47-\u0e4e"
    r"\u1ab0-\u1aff\u1dc0-\u1dff\u200c\u200d\u2060-\u206f\u20d0-\u20ff\u2800\u3099\u309a"
    r"\ufe00-\ufe0f\ufe20-\ufe2f"
)
_SHOWN = re.compile(f"[^{_SHOWS_NOTHING}]")
_FORBIDDEN = re.compile(f"[{_CONTROLS}{_ANYWHERE}]")
_FORBIDDEN_MULTILINE = re.compile(f"[{_CONTROLS_MULTILINE}{_ANYWHERE}]")


class Text(fields.String):
    """A string in NFC, trimmed, at most `max_length` characters, with no control
    characters, lone surrogates, bidi controls, invisible, private-use or noncharacters.
    Blank text loads as "", unless `blank=False`, which refuses it (and says so in the
    document's pattern)."""

    default_error_messages = {
        "too_long": "Longer than {max_length} characters.",
        "forbidden": "Contains U+{code:04X} ({what}); send plain text.",
        "blank": "Blank; send some text.",
    }

    def __init__(self, *, max_length: int, multiline: bool = False, blank: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length
        self.blank = blank
        self.forbidden = _FORBIDDEN_MULTILINE if multiline else _FORBIDDEN
        self.metadata.setdefault("maxLength", max_length)
        controls = _CONTROLS_MULTILINE if multiline else _CONTROLS
        refused = f"{controls}{_BIDI}{_INVISIBLE}{_NONCHARACTERS}{_PRIVATE_USE}"
        allowed = f"[^{refused}]*"
        visible = "" if blank else f"[^{_SHOWS_NOTHING}{refused}]{allowed}"
        if "format" not in self.metadata:
            # A field with a format (an email address) is described by it: an address
            # holds no control or bidi character either. Both at once also cost the
            # contract fuzzing a minute and a half of drawing strings that fit both.
            self.metadata.setdefault("pattern", f"^{allowed}{visible}$")

    def _deserialize(self, value, attr, data, **kwargs) -> str:
        value = super()._deserialize(value, attr, data, **kwargs)
        bad = self.forbidden.search(value)
        if bad:
            code = ord(bad.group())
            raise self.make_error("forbidden", code=code, what=_what(code))
        value = value.strip()
        if len(value) > self.max_length:
            raise self.make_error("too_long", max_length=self.max_length)
        if not value and not self.blank:
            raise self.make_error("blank")
        if value.isascii():
            return value
        # Checked again as stored: NFC can make text longer (U+0958 becomes two).
        value = unicodedata.normalize("NFC", value).strip()
        if len(value) > self.max_length:
            raise self.make_error("too_long", max_length=self.max_length)
        if not self.blank and not _SHOWN.search(value):
            raise self.make_error("blank")  # only joiners and combining marks
        return value


def from_header(value: str | None, max_length: int) -> str | None:
    """What of a request header's text may be stored beside checked text: its bytes read
    as UTF-8 (the server hands headers over as latin-1; a byte that is not UTF-8 becomes
    U+FFFD), without the characters Text refuses, in NFC, trimmed and cut to
    `max_length`; None when nothing is left. A header is no field a client corrects."""
    if not value:
        return None
    with contextlib.suppress(UnicodeEncodeError):  # already beyond latin-1: text as it is
        value = value.encode("latin-1").decode("utf-8", "replace")
    value = _FORBIDDEN.sub(_dropped, unicodedata.normalize("NFC", value)).strip()
    return value[:max_length].strip() or None


def _dropped(found: re.Match) -> str:
    """What a refused character of a header becomes: a space for a tab or line break
    (it separated words), nothing for the rest."""
    return " " if found.group() in "\t\n\r\x0b\x0c\x85\u2028\u2029" else ""


def _what(code: int) -> str:
    if 0xD800 <= code <= 0xDFFF:
        return "a lone surrogate, not valid Unicode"
    if code in (0x2028, 0x2029):
        return "a line break"
    if re.fullmatch(f"[{_BIDI}]", chr(code)):
        return "a bidi control character"
    if 0xE000 <= code <= 0xF8FF:
        return "a private-use character"
    if 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
        return "a noncharacter"
    if re.fullmatch(f"[{_INVISIBLE}{_ASTRAL}]", chr(code)):
        return "an invisible character"
    return "a control character"
