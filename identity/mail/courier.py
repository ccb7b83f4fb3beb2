"""Delivery of the outbox: `identity mail deliver` runs a Courier until it is stopped.

Any number of couriers, on any number of replicas, share one outbox. A courier claims due
mails (FOR UPDATE SKIP LOCKED) in one short statement that marks them `sending` with a
lease and commits, then records each mail's outcome in a statement of its own as soon as
the relay has answered. So no two couriers take the same mail, a crash repeats at most the
mails in flight (one per SMTP session), and the mails of a courier that died or froze are
taken by another once their lease has run out. A courier starts no mail late in its lease,
so that a mail it starts is done before another courier may take it.

A courier wakes when a transaction that queued mail commits (LISTEN identity_outbox) and
also polls, in case a notification was missed. A mail the relay refuses for now, or cannot
take because it is down, is tried again after a growing, jittered pause; one it refuses
for good (5xx), or that has been tried too often, is marked failed with the relay's answer.

A courier outlives its database: on any database error it logs the error's type, waits
(longer each time, up to half a minute), connects again and goes on. It beats its row in
`couriers` while it runs, so any replica's /health/ready can tell that mail goes out. It
stops between mails: on a stop, the mails in flight get `stop_seconds` to finish, then
their SMTP sessions are cut; what it claimed and did not send is due again at once.
"""

import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.rows import dict_row

from identity.mail.relay import DeliveryFailed, Relay, parse_smtp_url
from identity.mail.render import Branding, CannotBeMade, Renderer
from identity.metrics import MAIL_DELIVERIES
from identity.security.masking import mask_address
from identity.store import outbox
from identity.store.transactions import UnitOfWork

log = logging.getLogger(__name__)

CHANNEL = "identity_outbox"
# How the courier's connections show in pg_stat_activity.
APPLICATION_NAME = "identity-courier"
# A try's outcome as /metrics counts it: the status it leaves the mail in, in words.
_OUTCOMES = {"sent": "sent", "queued": "retry", "failed": "failed"}


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
    # A claimed mail is the courier's for this long; then any courier may take it.
    lease_seconds: float = 60.0
    # On a stop, mails in flight may finish for this long before their sessions are cut.
    stop_seconds: float = 5.0
    # After a database error the courier waits this long before it connects again, twice
    # as long after each next error in a row, up to the cap.
    reconnect_first_seconds: float = 0.5
    reconnect_max_seconds: float = 30.0


class Courier:
    """Takes due mail from the outbox and hands it to the relay (or, with no relay, to
    the log: template, masked recipient and subject only, never a link or its token),
    each mail in the brand, from the sender and with links on the pages of its site."""

    def __init__(
        self, renderer: Renderer, relay: Relay | None, settings: CourierSettings | None = None
    ):
        self.renderer = renderer
        self.relay = relay
        self.settings = settings or CourierSettings()
        # Names its claims and its row in `couriers`.
        self.id = uuid.uuid4()
        self._sessions = [relay] if relay else []
        if relay is not None:
            self._sessions += [
                Relay(relay.settings, timeout=relay.timeout)
                for _ in range(self.settings.connections - 1)
            ]
        self._senders: ThreadPoolExecutor | None = None
        # Whether it beats its row in `couriers`: only while it runs (`run`), not when a
        # command sends one mail through it.
        self._beating = False
        self._beaten_at = float("-inf")
        self._beat_lock = threading.Lock()
        # How long it waits after the next database error.
        self._pause = self.settings.reconnect_first_seconds
        # Set when a stop cut the SMTP sessions: a mail that fails then is not the relay's
        # fault, and is handed back untried.
        self._cut = False

    def run(self, database_url: str, stop: threading.Event) -> None:
        """Deliver until `stop` is set: at once when mail is queued, else every poll.
        After a database error of any kind, connect again after a growing pause."""
        log.info(
            "mail courier started", extra={"relay": self._relay_name(), "courier": str(self.id)}
        )
        ended = threading.Event()
        threading.Thread(
            target=self._cut_when_stop_overruns,
            args=(stop, ended),
            name="courier-stop",
            daemon=True,
        ).start()
        self._pause = self.settings.reconnect_first_seconds
        try:
            while not stop.is_set():
                try:
                    with psycopg.connect(
                        database_url,
                        autocommit=True,
                        row_factory=dict_row,
                        connect_timeout=5,
                        application_name=APPLICATION_NAME,
                    ) as conn:
                        uow = UnitOfWork.of(conn)
                        self._join(uow)
                        self._deliver_until(uow, stop)
                except psycopg.Error as exc:
                    # The type and SQLSTATE only: an error's words can quote a row's values.
                    log.warning(
                        "mail courier: database error; connecting again",
                        extra={
                            "error_type": type(exc).__name__,
                            "sqlstate": exc.sqlstate,
                            "retry_in_seconds": round(self._pause, 2),
                        },
                    )
                    stop.wait(self._pause)
                    self._pause = min(self.settings.reconnect_max_seconds, self._pause * 2)
        finally:
            ended.set()
            self._beating = False
            self.close()
        log.info("mail courier stopped", extra={"courier": str(self.id)})

    def _join(self, uow: UnitOfWork) -> None:
        """Listen, say it is alive, and hand back what it had claimed on a connection it
        lost (those mails' outcomes were not recorded; they are due again now)."""
        conn = uow.one_statement
        conn.execute(f"listen {CHANNEL}")
        handed_back = outbox.release(conn, self.id)
        if handed_back:
            log.info(
                "mail courier: claims of a lost connection handed back",
                extra={"mails": handed_back},
            )
        self._beating = True
        self._beat(conn, now=True)

    def _deliver_until(self, uow: UnitOfWork, stop: threading.Event) -> None:
        conn = uow.one_statement
        while not stop.is_set():
            self._deliver_due(uow, stop)
            # A round done whole: the next database error starts the pauses over.
            self._pause = self.settings.reconnect_first_seconds
            self._beat(conn)
            for _ in conn.notifies(timeout=self._idle_seconds(conn), stop_after=1):
                pass
        # Stopping: what is claimed and unsent is due again at once (not at the lease's
        # end), and the courier is no longer counted.
        outbox.release(conn, self.id)
        outbox.leave(conn, self.id)

    def _cut_when_stop_overruns(self, stop: threading.Event, ended: threading.Event) -> None:
        stop.wait()
        if not ended.wait(self.settings.stop_seconds):
            log.warning("mail courier: mails in flight at the stop did not finish; cutting")
            self._cut = True
            for session in self._sessions:
                session.cut()

    def close(self) -> None:
        """End the SMTP sessions that are open."""
        if self._senders is not None:
            self._senders.shutdown()
            self._senders = None
        for session in self._sessions:
            session.close()

    def deliver_due(self, conn: psycopg.Connection, only_id: int | None = None) -> int:
        """Send every mail that is due now; how many were tried."""
        return self._deliver_due(UnitOfWork.of(conn), threading.Event(), only_id)

    def _deliver_due(
        self, uow: UnitOfWork, stop: threading.Event, only_id: int | None = None
    ) -> int:
        """Claim a batch and send it, until fewer than a batch are due; how many were tried.
        A batch cut short (a stop, the lease nearly over) hands back the rest."""
        s = self.settings
        tried = 0
        while not stop.is_set():
            conn = uow.one_statement
            self._beat(conn)
            # The lease as this process sees it ends no later than the database's.
            claimed_at = time.monotonic()
            mails = outbox.claim_due(conn, self.id, s.batch_size, s.lease_seconds, only_id)
            done = self._send_batch(conn, mails, stop, claimed_at + s.lease_seconds)
            tried += done
            if done < len(mails):
                outbox.release(conn, self.id)
            if len(mails) < s.batch_size:
                break
        return tried

    def _send_batch(
        self,
        conn: psycopg.Connection,
        mails: list[dict],
        stop: threading.Event,
        lease_ends: float,
    ) -> int:
        """Send `mails` over every session at once, each taking the next unsent mail and
        recording its outcome as soon as the relay has answered; how many were done. No
        mail is started after a stop, or in the last part of the lease (half of it, or two
        SMTP timeouts when less), so none is still in flight when its lease runs out."""
        if not mails:
            return 0
        timeout = self.relay.timeout if self.relay else 0.0
        start_by = lease_ends - min(self.settings.lease_seconds / 2, 2 * timeout)
        waiting = deque(mails)
        broken = threading.Event()  # the database failed a session: the others stop too

        def may_start() -> bool:
            return not (stop.is_set() or broken.is_set()) and time.monotonic() < start_by

        def send_share(session: Relay | None) -> int:
            done = 0
            while may_start():
                try:
                    mail = waiting.popleft()
                except IndexError:
                    break
                outcome = self._deliver(mail, session)
                if outcome is None:  # cut by a stop: handed back with the rest
                    break
                MAIL_DELIVERIES.labels(mail["template"], _OUTCOMES[outcome["status"]]).inc()
                try:
                    if not outbox.record_outcome(conn, self.id, outcome):
                        log.warning(
                            "mail courier: a mail's lease had run out; another courier took it",
                            extra={"outbox_id": mail["id"], "status": outcome["status"]},
                        )
                    self._beat(conn)
                except psycopg.Error:
                    broken.set()
                    raise
                done += 1
            return done

        sessions = self._sessions or [None]
        if len(sessions) == 1 or len(mails) == 1:
            return send_share(sessions[0])
        if self._senders is None:
            self._senders = ThreadPoolExecutor(len(sessions), "smtp-session")
        shares = [self._senders.submit(send_share, session) for session in sessions]
        # Every share ends before the batch does: the rest is handed back only when no
        # session can still be sending one of it.
        wait(shares)
        return sum(share.result() for share in shares)

    def _beat(self, conn: psycopg.Connection, *, now: bool = False) -> None:
        """Say, at most every so often, that this courier is alive for a lease and a poll
        more: beaten between mails and while idle, so a courier that died or froze stops
        counting soon after."""
        if not self._beating:
            return
        s = self.settings
        with self._beat_lock:
            if not now and time.monotonic() - self._beaten_at < min(
                s.poll_seconds, s.lease_seconds / 4
            ):
                return
            self._beaten_at = time.monotonic()
        outbox.beat(
            conn, self.id, os.getpid(), socket.gethostname(), s.lease_seconds + s.poll_seconds
        )

    def _deliver(self, mail: dict, session: Relay | None) -> dict | None:
        try:
            outgoing = self.renderer.outgoing(
                mail["template"],
                mail["language"],
                mail["mail_values"],
                mail["recipient"],
                mail["message_uuid"],
                mail["created_at"],
                branding(mail),
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
            if self._cut:
                return None
            return self._failed(mail, exc.reason, permanent=exc.permanent, code=exc.code)
        except CannotBeMade as exc:
            return self._failed(mail, f"cannot be made: {exc}", permanent=True)
        except Exception as exc:  # a template that cannot be filled: no retry will help
            return self._failed(mail, f"cannot be made: {type(exc).__name__}", permanent=True)
        return {"id": mail["id"], "status": "sent"}

    def _failed(self, mail: dict, reason: str, *, permanent: bool, code=None) -> dict:
        attempt = mail["attempts"] + 1
        # The relay's answer may hold the address: the outbox keeps it, the log does not.
        log.warning(
            "mail not delivered",
            extra={
                "outbox_id": mail["id"],
                "attempt": attempt,
                "smtp_code": code,
                "permanent": permanent,
            },
        )
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
        seconds = (due - datetime.now(UTC)).total_seconds()
        return max(0.05, min(self.settings.poll_seconds, seconds))

    def _relay_name(self) -> str:
        if self.relay is None:
            return "log"
        return f"{self.relay.settings.host}:{self.relay.settings.port}"


def branding(mail: dict) -> Branding | None:
    """The site a claimed mail goes out as (outbox.claim_due reads it with the mail); None
    for the service's own mail. A site no longer there (sites are revoked, never deleted;
    but a table can be emptied) leaves the mail nothing to be sent as."""
    if mail["site_id"] is None:
        return None
    if mail["site_name"] is None:
        raise CannotBeMade("the site it is sent for is no longer known")
    return Branding(mail["site_name"], mail["brand"], mail["sender"], mail["pages_url"])


def courier_from_settings(config: dict) -> Courier:
    """The courier the settings describe: their relay (none: the log), the sender of mail
    without a site of its own (IDENTITY_MAIL_FROM) and pacing."""
    relay = (
        Relay(parse_smtp_url(config["SMTP_URL"]), timeout=config["SMTP_TIMEOUT_SECONDS"])
        if config["SMTP_URL"]
        else None
    )
    return Courier(
        Renderer(config["MAIL_FROM"], config["PUBLIC_URL"]),
        relay,
        CourierSettings(
            max_attempts=config["MAIL_MAX_ATTEMPTS"],
            retry_base_seconds=config["MAIL_RETRY_SECONDS"],
            poll_seconds=config["MAIL_POLL_SECONDS"],
            connections=config["MAIL_CONNECTIONS"],
            lease_seconds=config["MAIL_LEASE_SECONDS"],
            stop_seconds=config["MAIL_STOP_SECONDS"],
        ),
    )
