"""Mails made from their templates: subject, plain text and HTML, in the person's language.

A template is templates/NAME.LANG.jinja with three blocks: `subject`, `text` and `html`.
The text and the subject are rendered as they are; the HTML with every value escaped.
"""

import email.policy
import email.utils
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlencode
from uuid import UUID

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
        loader = FileSystemLoader(_DIRECTORY)
        self._plain = Environment(loader=loader, autoescape=False, undefined=StrictUndefined)  # noqa: S701 - text/plain
        self._html = Environment(loader=loader, autoescape=True, undefined=StrictUndefined)
        for environment in (self._plain, self._html):
            environment.globals["link"] = self.link

    def link(self, path: str, token: str | None = None) -> str:
        query = f"?{urlencode({'token': token})}" if token is not None else ""
        return f"{self.public_url}{path}{query}"

    def letter(self, template: str, language: str, values: dict) -> Letter:
        name = f"{template}.{language}.jinja"
        plain, html = self._plain.get_template(name), self._html.get_template(name)
        subject = _render_block(plain, "subject", values)
        return Letter(
            # One line, whatever a value held: no header can be injected through it.
            subject=" ".join(subject.split()),
            text=_render_block(plain, "text", values).strip() + "\n",
            html=_render_block(html, "html", values).strip() + "\n",
        )

    def message(
        self,
        template: str,
        language: str,
        values: dict,
        recipient: str,
        message_uuid: UUID,
        created_at: datetime,
    ) -> EmailMessage:
        """The whole mail, multipart/alternative (text, then HTML), as it goes to the relay."""
        letter = self.letter(template, language, values)
        message = EmailMessage(policy=email.policy.SMTP)
        message["From"] = self.sender
        message["To"] = _address(recipient)
        message["Subject"] = letter.subject
        message["Date"] = email.utils.format_datetime(created_at)
        message["Message-ID"] = f"<{message_uuid}@{_domain(self.sender)}>"
        message["Auto-Submitted"] = "auto-generated"
        message["Content-Language"] = language
        message.set_content(letter.text)
        message.add_alternative(letter.html, subtype="html")
        return message


def _render_block(template, block: str, values: dict) -> str:
    return "".join(template.blocks[block](template.new_context(values)))


def _address(recipient: str) -> Address:
    local, _, domain = recipient.rpartition("@")
    return Address(username=local, domain=domain)


def _domain(sender: str) -> str:
    return email.utils.parseaddr(sender)[1].rpartition("@")[2] or "identity.invalid"
