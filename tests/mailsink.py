"""A real SMTP server on loopback (aiosmtpd) that keeps what it is given, for the tests."""

import email
import email.policy
import socket
import threading
import time

from aiosmtpd.controller import Controller


class Sink:
    """What the server took, and which recipients it refuses for good."""

    def __init__(self):
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.refuse: set[str] = set()
        self.arrived = threading.Condition()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 <" + address + ">: no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.arrived:
            self.messages.append(message)
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
            self.arrived.notify_all()
        return "250 OK: queued"

    def wait_for(self, count: int, timeout: float = 10.0) -> list:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.messages) >= count, timeout), (
                f"{len(self.messages)} of {count} mails arrived"
            )
            return list(self.messages)


class MailServer:
    """An aiosmtpd server on a fixed loopback port that a test can stop and start again."""

    def __init__(self, idle_timeout: float | None = None, smtputf8: bool = True):
        self.sink = Sink()
        # Seconds the server keeps an idle session before closing it (Postfix: 300).
        self.idle_timeout = idle_timeout
        # Whether it takes international addresses (RFC 6531); a test may change it
        # between a stop and a start, as a relay's upgrade does.
        self.smtputf8 = smtputf8
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"smtp://127.0.0.1:{self.port}"
        self._controller = None

    def start(self) -> None:
        extra = {} if self.idle_timeout is None else {"timeout": self.idle_timeout}
        self._controller = Controller(
            self.sink,
            hostname="127.0.0.1",
            port=self.port,
            enable_SMTPUTF8=self.smtputf8,
            **extra,
        )
        for _ in range(50):  # the port may linger a moment after a stop
            try:
                self._controller.start()
                return
            except (OSError, RuntimeError):
                time.sleep(0.1)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
