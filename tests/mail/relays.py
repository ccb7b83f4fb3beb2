"""Relays on loopback that misbehave for real: one that takes the connection and never
says a word, one that goes silent at a chosen step of the SMTP conversation, and an
aiosmtpd sink that takes its time over each mail."""

import asyncio
import contextlib
import socket
import threading

from tests.mailsink import MailServer, Sink

STEPS = ("greeting", "EHLO", "MAIL", "RCPT", "DATA", "end of data")
ANSWERS = {
    b"EHLO": b"250-relay\r\n250 SMTPUTF8\r\n",
    b"MAIL": b"250 OK\r\n",
    b"RCPT": b"250 OK\r\n",
    b"DATA": b"354 go on\r\n",
}


class SilentRelay:
    """Accepts every TCP connection and sends nothing, ever, until it is closed."""

    def __init__(self, silent_from: str = "greeting"):
        assert silent_from in STEPS
        self.silent_from = silent_from
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"smtp://127.0.0.1:{self.port}"
        self.accepted = threading.Semaphore(0)
        self._connections: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._connections.append(conn)
            self.accepted.release()
            threading.Thread(target=self._converse, args=(conn,), daemon=True).start()

    def _converse(self, conn: socket.socket) -> None:
        """Answer as a relay would, up to the step it falls silent at."""

        def answer(step: str, reply: bytes) -> bool:
            if step == self.silent_from:
                return False
            conn.sendall(reply)
            return True

        with contextlib.suppress(OSError, ValueError), conn.makefile("rb") as reader:
            if not answer("greeting", b"220 relay ESMTP\r\n"):
                return
            for line in reader:
                verb = line[:4].upper()
                if verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                if not answer(verb.decode("ascii", "replace"), ANSWERS.get(verb, b"250 OK\r\n")):
                    return
                if verb == b"DATA":
                    for body_line in reader:
                        if body_line == b".\r\n":
                            break
                    if not answer("end of data", b"250 OK: queued\r\n"):
                        return

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        for conn in self._connections:
            conn.close()


class SlowSink(Sink):
    """A sink that takes `seconds` over each mail before it says it has it."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.seconds)
        return await super().handle_DATA(server, session, envelope)


def slow_mail_server(seconds: float) -> MailServer:
    server = MailServer()
    server.sink = SlowSink(seconds)
    return server
