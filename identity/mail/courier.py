"""Delivery of the outbox: `identity mail deliver` runs a Courier until it is stopped.

Any number of couriers, on any number of replicas, share one outbox: each claims due
mails with FOR UPDATE SKIP LOCKED, so no two take the same mail. A courier wakes when a
transaction that queued mail commits (LISTEN identity_outbox) and also polls, in case a
notification was missed. A mail the relay refuses for now, or cannot take because it is
down, is tried again after a growing, jittered pause; one it refuses for good (5xx), or
that has been tried too often, is marked failed with the relay's answer.
"""

import logging
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.rows import dict_row

from identity.mail.relay import DeliveryFailed, Relay, parse_smtp_url
from identity.mail.render import Renderer
from identity.security.masking import mask_address
from identity.store import outbox

log = logging.getLogger(__name__)

CHANNEL = "identity_outbox"


@dataclass(frozen=True)
class CourierSettings:
    batch_size: int = 100
    # SMTP sessions a courier keeps to the relay and sends over at once: one session
    # waits for the relay's answer to each command, most of the time a mail takes.
    connections: int = 4
    max_attempts: int = 10
    # The first retry waits about this long; each next one twice as long, up to the cap.
    retry_base_seconds: float = 30.0
    retry_max_seconds: float = 6 * 3600.0
    # Polled this often even without a notification.
    poll_seconds: float = 1.0


class Courier:
    """Takes due mail from the outbox and hands it to the relay (or, with no relay, to
    the log: template, masked recipient and subject only, never a link or its token)."""

    def __init__(
        self, renderer: Renderer, relay: Relay | None, settings: CourierSettings | None = None
    ):
        self.renderer = renderer
        self.relay = relay
        self.settings = settings or CourierSettings()
        self._sessions = [relay] if relay else []
        if relay is not None:
            self._sessions += [
                Relay(relay.settings, timeout=relay.timeout)
                for _ in range(self.settings.connections - 1)
            ]
        self._senders: ThreadPoolExecutor | None = None

    def run(self, database_url: str, stop: threading.Event) -> None:
        """Deliver until `stop` is set: at once when mail is queued, else every poll.
        While the database is away, try again every few seconds."""
        log.info("mail courier started", extra={"relay": self._relay_name()})
        try:
            while not stop.is_set():
                try:
                    self._listen_and_deliver(database_url, stop)
                except psycopg.OperationalError as exc:
                    log.warning("mail courier lost the database", extra={"sqlstate": exc.sqlstate})
                    stop.wait(self.settings.poll_seconds)
        finally:
            self.close()

    def _listen_and_deliver(self, database_url: str, stop: threading.Event) -> None:
        with psycopg.connect(
            database_url, autocommit=True, row_factory=dict_row, connect_timeout=5
        ) as conn:
            conn.execute(f"listen {CHANNEL}")
            while not stop.is_set():
                self.deliver_due(conn)
                for _ in conn.notifies(timeout=self._idle_seconds(conn), stop_after=1):
                    pass

    def close(self) -> None:
        """End the SMTP sessions that are open."""
        if self._senders is not None:
            self._senders.shutdown()
            self._senders = None
        for session in self._sessions:
            session.close()

    def deliver_due(self, conn: psycopg.Connection, only_id: int | None = None) -> int:
        """Send every mail that is due now, a batch per transaction; how many were tried."""
        tried = 0
        while True:
            with conn.transaction():
                mails = outbox.claim_due(conn, self.settings.batch_size, only_id)
                outbox.record_outcomes(conn, self._deliver_all(mails))
            tried += len(mails)
            if len(mails) < self.settings.batch_size:
                return tried

    def _deliver_all(self, mails: list[dict]) -> list[dict]:
        """Each mail's outcome; sent over every session at once when there are several."""
        if len(self._sessions) < 2 or len(mails) < 2:
            session = self._sessions[0] if self._sessions else None
            return [self._deliver(mail, session) for mail in mails]
        if self._senders is None:
            self._senders = ThreadPoolExecutor(len(self._sessions), "smtp-session")
        shares = [mails[n :: len(self._sessions)] for n in range(len(self._sessions))]
        sent = self._senders.map(
            lambda share, session: [self._deliver(mail, session) for mail in share],
            shares,
            self._sessions,
        )
        return [outcome for share in sent for outcome in share]

    def _deliver(self, mail: dict, session: Relay | None) -> dict:
        try:
            outgoing = self.renderer.outgoing(
                mail["template"],
                mail["language"],
                mail["mail_values"],
                mail["recipient"],
                mail["message_uuid"],
                mail["created_at"],
            )
            if session is None:
                log.info(
                    "mail written to the log, not sent: IDENTITY_SMTP_URL is not set",
                    extra={
                        "outbox_id": mail["id"],
                        "template": mail["template"],
                        "language": mail["language"],
                        "to": mask_address(mail["recipient"]),
                        "subject": outgoing.subject,
                    },
                )
            else:
                session.send(outgoing)
        except DeliveryFailed as exc:
            return self._failed(mail, exc.reason, permanent=exc.permanent, code=exc.code)
        except Exception as exc:  # a template that cannot be filled: no retry will help
            return self._failed(mail, f"cannot be made: {type(exc).__name__}", permanent=True)
        return {"id": mail["id"], "status": "sent"}

    def _failed(self, mail: dict, reason: str, *, permanent: bool, code=None) -> dict:
        attempt = mail["attempts"] + 1
        # The relay's answer may hold the address: the outbox keeps it, the log does not.
        log.warning(
            "mail not delivered",
            extra={"outbox_id": mail["id"], "attempt": attempt, "smtp_code": code,
                   "permanent": permanent},
        )  # fmt: skip
        if permanent or attempt >= self.settings.max_attempts:
            return {"id": mail["id"], "status": "failed", "error": reason}
        return {
            "id": mail["id"],
            "status": "queued",
            "error": reason,
            "next_attempt_at": datetime.now(UTC) + timedelta(seconds=self.retry_delay(attempt)),
        }

    def retry_delay(self, attempt: int) -> float:
        """Seconds before try `attempt + 1`: exponential, capped, with full jitter
        (AWS's "exponential backoff and jitter"), so mails that failed together spread out."""
        s = self.settings
        ceiling = min(s.retry_max_seconds, s.retry_base_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _idle_seconds(self, conn: psycopg.Connection) -> float:
        """How long to wait for a notification: until the next retry is due, at most a poll."""
        due = outbox.next_due(conn)
        if due is None:
            return self.settings.poll_seconds
        wait = (due - datetime.now(UTC)).total_seconds()
        return max(0.05, min(self.settings.poll_seconds, wait))

    def _relay_name(self) -> str:
        if self.relay is None:
            return "log"
        return f"{self.relay.settings.host}:{self.relay.settings.port}"


def courier_from_settings(config: dict) -> Courier:
    """The courier the settings describe: their relay (none: the log), sender and pacing."""
    relay = Relay(parse_smtp_url(config["SMTP_URL"])) if config["SMTP_URL"] else None
    return Courier(
        Renderer(config["PUBLIC_URL"], config["MAIL_FROM"]),
        relay,
        CourierSettings(
            max_attempts=config["MAIL_MAX_ATTEMPTS"],
            retry_base_seconds=config["MAIL_RETRY_SECONDS"],
            poll_seconds=config["MAIL_POLL_SECONDS"],
            connections=config["MAIL_CONNECTIONS"],
        ),
    )
