"""Mails made from their templates: subject, plain text and HTML, in the person's language,
in the brand of the site the mail goes out as, with its links on that site's pages.

A template is templates/NAME.LANG.jinja with three blocks: `subject`, `text` and `html`.
The text and the subject are rendered as they are; the HTML with every value escaped.
Besides the mail's own values, every template has `brand` (the site's) and
`link(path, token)` (`{pages}{path}?token=...`, on the site's pages).
"""

import binascii
import email.header
import email.utils
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, partial
from pathlib import Path
from urllib.parse import urlencode
from uuid import UUID

import idna
from jinja2 import Environment, FileSystemLoader, StrictUndefined

LANGUAGES = ("en", "nl")
_DIRECTORY = Path(__file__).resolve().parent / "templates"
TEMPLATES = frozenset(path.name.split(".")[0] for path in _DIRECTORY.glob("*.*.jinja"))


@dataclass(frozen=True)
class Branding:
    """The site a mail goes out as, as the courier reads it when it sends: its name, its
    brand (None: its name), its sender (None: IDENTITY_MAIL_FROM's address, named by the
    brand) and the base URL of its pages, which its links are on."""

    name: str
    brand: str | None = None
    sender: str | None = None
    pages: str | None = None

    @property
    def shown_as(self) -> str:
        return self.brand or self.name


class CannotBeMade(Exception):
    """A mail its template cannot be filled for, however often it is tried; the words say
    why, and hold no value of the mail."""


@dataclass(frozen=True)
class Letter:
    subject: str
    text: str
    html: str


class Renderer:
    """Fills templates, each mail in the branding of its site; a mail without one (the
    service's own, `identity mail test`) goes out from `default_sender`
    (IDENTITY_MAIL_FROM), which also lends its address to a site that has no sender."""

    def __init__(self, default_sender: str, public_url: str | None = None):
        self.default_sender = default_sender
        # Where a mail without a site links: mails queued before sites had pages (links
        # on IDENTITY_PUBLIC_URL, as they were made) go out as they would have then,
        # rather than fail at an upgrade. The service's own mails have no links.
        self._public_url = public_url.rstrip("/") if public_url else None
        # What a mail without a site calls the service: IDENTITY_MAIL_FROM's name.
        name, address = email.utils.parseaddr(default_sender)
        self._default_brand = name or address
        # Templates are read once: they ship with the code and change only with it.
        options = {
            "loader": FileSystemLoader(_DIRECTORY),
            "undefined": StrictUndefined,
            "auto_reload": False,
        }
        self._plain = Environment(autoescape=False, **options)  # noqa: S701 - text/plain
        self._html = Environment(autoescape=True, **options)

    def letter(
        self, template: str, language: str, values: dict, site: Branding | None = None
    ) -> Letter:
        """The mail's three parts, `brand` and `link` filled in from `site` (over any
        value of the same name: what a site is called is never a mail's own value)."""
        name = f"{template}.{language}.jinja"
        plain, html = self._plain.get_template(name), self._html.get_template(name)
        values = values | {
            "brand": site.shown_as if site else self._default_brand,
            "link": partial(link, site.pages if site else self._public_url),
        }
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
        site: Branding | None = None,
    ) -> "Outgoing":
        """The whole mail as it goes to the relay: multipart/alternative, text then HTML,
        from the site's sender (or the default one), its Message-ID in that sender's
        domain."""
        letter = self.letter(template, language, values, site)
        sender = self.sender_of(site)
        envelope_to, smtputf8 = envelope_address(recipient)
        headers = [
            ("From", sender.header),
            ("To", recipient if smtputf8 else envelope_to),
            ("Subject", _header_text(letter.subject, smtputf8)),
            ("Date", email.utils.format_datetime(created_at)),
            ("Message-ID", f"<{message_uuid}@{sender.domain}>"),
            ("Auto-Submitted", "auto-generated"),
            ("Content-Language", language),
        ]
        return Outgoing(
            sender=sender.address,
            recipient=envelope_to,
            smtputf8=smtputf8,
            subject=letter.subject,
            data=_multipart_alternative(headers, letter.text, letter.html, message_uuid.hex),
        )

    def sender_of(self, site: Branding | None) -> "Sender":
        """Who a mail is from: the site's sender (named by its brand when the sender names
        no one); a site without a sender, IDENTITY_MAIL_FROM's address named by the
        brand, so the person still sees which site wrote; no site, IDENTITY_MAIL_FROM."""
        if site is None:
            return _sender(self.default_sender, None)
        if site.sender is None:
            return _sender(email.utils.parseaddr(self.default_sender)[1], site.shown_as)
        return _sender(site.sender, site.shown_as)


@dataclass(frozen=True)
class Sender:
    """A mail's From header, its envelope sender, and the domain of its Message-ID."""

    header: str
    address: str
    domain: str


# Every mail of a site has the same sender: made once per site and brand, not per mail.
@lru_cache(maxsize=256)
def _sender(sender: str, brand: str | None) -> Sender:
    """`sender` as From, with `brand` as its name when it has none of its own (an
    RFC 2047 encoded word where the name goes beyond ASCII; quoted where it holds
    specials): a brand is one line, so it cannot add a header."""
    name, address = email.utils.parseaddr(sender)
    if brand is not None and not name:
        name = brand
    # One line, whatever the database holds (the site's settings are checked to be, but
    # a header is not the place to trust that).
    name = " ".join(name.split())
    if name.isascii():
        header = email.utils.formataddr((name, address))
    else:
        # Encoded words of at most 75 characters each (RFC 2047 section 2), folded:
        # formataddr would make one word of a long name, however long.
        words = email.header.Header(name, "utf-8", header_name="From").encode(linesep="\r\n")
        header = f"{words} <{address}>"
    return Sender(header, address, address.rpartition("@")[2] or "identity.invalid")


def link(pages: str | None, path: str, token: str | None = None) -> str:
    """`{pages}{path}?token=...`: a link on the site's pages, which take the token and
    call the API. A mail without a site has no pages, so no link can be made for it."""
    if not pages:
        raise CannotBeMade("its template has a link, and it has no site with pages to link to")
    query = f"?{urlencode({'token': token})}" if token is not None else ""
    return f"{pages}{path}{query}"


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
