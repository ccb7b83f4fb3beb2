"""The SMTP relay that takes our mail: its URL, one session kept open, and what its
answers mean for a mail (sent, try again later, or give up)."""

import contextlib
import logging
import smtplib
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from identity.errors import ConfigurationError
from identity.mail.render import Outgoing

log = logging.getLogger(__name__)


class DeliveryFailed(Exception):
    """The relay did not take the mail; `permanent` when trying again cannot help."""

    def __init__(self, reason: str, *, permanent: bool, code: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.code = code


@dataclass(frozen=True)
class RelaySettings:
    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = None


def _session_gone(error: Exception) -> bool:
    """Whether `error` says the relay had closed the session before this mail: the
    connection dropped, or a 421 ("closing transmission channel", said on its timeout)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return False
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code == 421
    return isinstance(error, smtplib.SMTPServerDisconnected | ConnectionError)


def _offered_before(error: Exception) -> bool:
    """Whether `error` is smtplib refusing a mail for an extension (SMTPUTF8) the relay
    did not offer when the session began: judged on that old offer, without asking the
    relay, which may offer it now (upgraded, restarted)."""
    return isinstance(error, smtplib.SMTPNotSupportedError)


def parse_smtp_url(url: str) -> RelaySettings:
    """smtp://[user:password@]host[:port][?starttls=1] or smtps://... (implicit TLS)."""
    shape = "IDENTITY_SMTP_URL must look like smtp://host:port or smtps://user:password@host"
    try:
        parts = urlsplit(url)
    except ValueError:  # an unclosed [ of an IPv6 address, say
        raise ConfigurationError(shape) from None
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ConfigurationError(shape)
    query = parse_qs(parts.query)
    try:
        port = parts.port or (465 if parts.scheme == "smtps" else 25)
    except ValueError:
        raise ConfigurationError("IDENTITY_SMTP_URL has a port that is not a number") from None
    return RelaySettings(
        host=parts.hostname,
        port=port,
        implicit_tls=parts.scheme == "smtps",
        starttls=query.get("starttls", ["0"])[0] in ("1", "true", "yes"),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


class Relay:
    """One SMTP session to the relay, opened when first needed and kept across mails;
    dropped after any failure that may have left it in doubt."""

    def __init__(self, settings: RelaySettings, *, timeout: float = 20.0):
        self.settings = settings
        self.timeout = timeout
        self._session: smtplib.SMTP | None = None

    def send(self, mail: Outgoing) -> None:
        """Hand `mail` to the relay, or raise DeliveryFailed."""
        options = ["SMTPUTF8"] if mail.smtputf8 else []
        try:
            reused = self._session is not None
            try:
                self._open().sendmail(
                    mail.sender, [mail.recipient], mail.data, mail_options=options
                )
            except (smtplib.SMTPException, ConnectionError) as exc:
                if not (reused and (_session_gone(exc) or _offered_before(exc))):
                    raise
                # A session kept open across mails that the relay closed meanwhile (its
                # idle timeout), or whose offer of extensions is older than the relay's
                # last restart: the mail never reached it. Once more on a new session, at
                # once, rather than a retry half a minute later or a failure for good.
                self.close()
                log.info(
                    "relay session kept from before failed; reconnecting",
                    extra={"error_type": type(exc).__name__},
                )
                self._open().sendmail(
                    mail.sender, [mail.recipient], mail.data, mail_options=options
                )
        except smtplib.SMTPRecipientsRefused as exc:
            code, answer = next(iter(exc.recipients.values()))
            raise _failure(code, answer) from None
        except smtplib.SMTPResponseException as exc:  # sender refused, data refused, ...
            self.close()
            raise _failure(exc.smtp_code, exc.smtp_error) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise DeliveryFailed(f"the relay cannot take it: {exc}", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:
            self.close()
            raise DeliveryFailed(
                f"the relay cannot be reached: {type(exc).__name__}", permanent=False
            ) from None

    def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                # QUIT is a courtesy: a relay gone silent does not hold a stop up for long.
                if session.sock is not None:
                    session.sock.settimeout(min(self.timeout, 1.0))
                session.quit()
            except (smtplib.SMTPException, OSError):
                session.close()

    def cut(self) -> None:
        """End the session at once, from another thread: whatever its own thread waits for
        from the relay (a greeting, an answer) fails now instead of at the timeout."""
        session = self._session
        sock = session and session.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _open(self) -> smtplib.SMTP:
        if self._session is not None:
            return self._session
        s = self.settings
        # `timeout` bounds each step on the socket: the connection, the greeting, EHLO,
        # MAIL, RCPT, DATA and the answer to the mail's end. Kept before it connects, so
        # that `cut` reaches a session still waiting for the relay's greeting.
        if s.implicit_tls:
            session = smtplib.SMTP_SSL(timeout=self.timeout, context=ssl.create_default_context())
        else:
            session = smtplib.SMTP(timeout=self.timeout)
        self._session = session
        try:
            code, greeting = session.connect(s.host, s.port)
            if code != 220:
                raise smtplib.SMTPConnectError(code, greeting)
            if s.starttls:
                session.starttls(context=ssl.create_default_context())
            if s.username:
                session.login(s.username, s.password or "")
        except BaseException:
            self._session = None
            session.close()
            raise
        return session


def _failure(code: int, answer: bytes | str) -> DeliveryFailed:
    text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else str(answer)
    # 5xx: the relay will never take it; 4xx (and anything odd): it may later.
    return DeliveryFailed(f"{code} {text}"[:500], permanent=500 <= code < 600, code=code)
