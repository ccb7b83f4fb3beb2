"""Mails made from their templates: subject, plain text and HTML, in the person's language.

A template is templates/NAME.LANG.jinja with three blocks: `subject`, `text` and `html`.
The text and the subject are rendered as they are; the HTML with every value escaped.
"""

import binascii
import email.header
import email.utils
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from urllib.parse import urlencode
from uuid import UUID

import idna
from jinja2 import Environment, FileSystemLoader, StrictUndefined

LANGUAGES = ("en", "nl")
_DIRECTORY = Path(__file__).resolve().parent / "templates"
TEMPLATES = frozenset(path.name.split(".")[0] for path in _DIRECTORY.glob("*.*.jinja"))


@dataclass(frozen=True)
class Letter:
    subject: str
    text: str
    html: str


class Renderer:
    """Fills templates; builds links on `public_url` with their token as `token=`."""

    def __init__(self, public_url: str, sender: str):
        self.public_url = public_url.rstrip("/")
        self.sender = sender
        # Templates are read once: they ship with the code and change only with it.
        options = {
            "loader": FileSystemLoader(_DIRECTORY),
            "undefined": StrictUndefined,
            "auto_reload": False,
        }
        self._plain = Environment(autoescape=False, **options)  # noqa: S701 - text/plain
        self._html = Environment(autoescape=True, **options)
        for environment in (self._plain, self._html):
            environment.globals["link"] = self.link

    def link(self, path: str, token: str | None = None) -> str:
        query = f"?{urlencode({'token': token})}" if token is not None else ""
        return f"{self.public_url}{path}{query}"

    def letter(self, template: str, language: str, values: dict) -> Letter:
        name = f"{template}.{language}.jinja"
        plain, html = self._plain.get_template(name), self._html.get_template(name)
        plain_context, html_context = plain.new_context(values), html.new_context(values)
        subject = _render_block(plain, plain_context, "subject")
        return Letter(
            # One line, whatever a value held: no header can be injected through it.
            subject=" ".join(subject.split()),
            text=_render_block(plain, plain_context, "text").strip() + "\n",
            html=_render_block(html, html_context, "html").strip() + "\n",
        )

    def outgoing(
        self,
        template: str,
        language: str,
        values: dict,
        recipient: str,
        message_uuid: UUID,
        created_at: datetime,
    ) -> "Outgoing":
        """The whole mail as it goes to the relay: multipart/alternative, text then HTML."""
        letter = self.letter(template, language, values)
        envelope_to, smtputf8 = envelope_address(recipient)
        headers = [
            ("From", self._from_header),
            ("To", recipient if smtputf8 else envelope_to),
            ("Subject", _header_text(letter.subject, smtputf8)),
            ("Date", email.utils.format_datetime(created_at)),
            ("Message-ID", f"<{message_uuid}@{self._domain}>"),
            ("Auto-Submitted", "auto-generated"),
            ("Content-Language", language),
        ]
        return Outgoing(
            sender=self._envelope_from,
            recipient=envelope_to,
            smtputf8=smtputf8,
            subject=letter.subject,
            data=_multipart_alternative(headers, letter.text, letter.html, message_uuid.hex),
        )

    @cached_property
    def _from_header(self) -> str:
        name, address = email.utils.parseaddr(self.sender)
        return email.utils.formataddr((name, address), charset="utf-8")

    @cached_property
    def _envelope_from(self) -> str:
        return email.utils.parseaddr(self.sender)[1]

    @cached_property
    def _domain(self) -> str:
        return self._envelope_from.rpartition("@")[2] or "identity.invalid"


@dataclass(frozen=True)
class Outgoing:
    """A mail ready for the relay: its envelope and its bytes (RFC 5322, CRLF)."""

    sender: str
    recipient: str
    smtputf8: bool
    subject: str
    data: bytes


def envelope_address(recipient: str) -> tuple[str, bool]:
    """The address as the SMTP envelope carries it (an IDN domain in punycode), and
    whether its local part goes beyond ASCII, which needs the relay's SMTPUTF8."""
    local, _, domain = recipient.rpartition("@")
    if not domain.isascii():
        domain = idna.encode(domain, uts46=True).decode("ascii")
    return f"{local}@{domain}", not local.isascii()


# Written out here rather than with email.message.EmailMessage, which took 3 ms a mail,
# twice what the SMTP exchange itself takes on loopback: the mail is always the same
# shape, and the standard library still does every encoding (RFC 2047, quoted-printable).
def _multipart_alternative(
    headers: list[tuple[str, str]], text: str, html: str, boundary_seed: str
) -> bytes:
    boundary = f"=_identity_{boundary_seed}"
    lines = [f"{name}: {value}" for name, value in headers]
    lines += [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
    ]
    for subtype, body in (("plain", text), ("html", html)):
        lines += [
            f"--{boundary}",
            f"Content-Type: text/{subtype}; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "",
            _quoted_printable(body),
        ]
    lines += [f"--{boundary}--", ""]
    return "\r\n".join(lines).encode("utf-8")


def _quoted_printable(body: str) -> str:
    encoded = binascii.b2a_qp(body.encode("utf-8"), istext=True).decode("ascii")
    return encoded.replace("\r\n", "\n").replace("\n", "\r\n")


def _header_text(value: str, smtputf8: bool) -> str:
    """A header value as the relay may carry it: as it is in ASCII, or with SMTPUTF8;
    else RFC 2047 encoded words."""
    if value.isascii() or smtputf8:
        return value
    return email.header.Header(value, "utf-8", maxlinelen=76).encode(linesep="\r\n")


def _render_block(template, context, block: str) -> str:
    return "".join(template.blocks[block](context))
