"""Mail delivery speed: the courier against a bare smtplib loop, to one aiosmtpd sink.

    .venv/bin/python bench/mail_delivery.py [--mails 10000] [--samples 20]

Runs on a private embedded PostgreSQL (.data/bench-pg) and an aiosmtpd sink on loopback,
in a process of its own, that counts what it takes. Baseline: one smtplib session
sending the same mail (`--mails` times) with no database and no rendering. Target: the
same number of mails queued in the outbox, delivered by one Courier (claim, render, send
over its SMTP sessions, record). Then the
time from a commit to the arrival at the sink with a courier idle and listening: median
of `--samples`. Exit 0 whatever the numbers; PASS/FAIL is printed against the targets.
"""

import argparse
import multiprocessing
import smtplib
import socket
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from aiosmtpd.controller import Controller
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from identity.embedded import ensure_database, start_embedded
from identity.mail import enqueue
from identity.mail.courier import Courier, CourierSettings
from identity.mail.relay import Relay, parse_smtp_url
from identity.mail.render import Renderer
from identity.store import migrations

PGDATA = Path(__file__).resolve().parents[1] / ".data" / "bench-pg"
THROUGHPUT_TARGET = 0.7
LATENCY_TARGET = 1.0
SENDER = "identity <no-reply@example.com>"
VALUES = {"token": "t" * 43, "valid_hours": 24}


class CountingSink:
    """An aiosmtpd server in a process of its own, as a relay would be: it shares no
    interpreter lock with the sender. `count` is how many mails it has taken."""

    def __init__(self, port: int):
        self._count = multiprocessing.Value("q", 0)
        ready = multiprocessing.Event()
        self._process = multiprocessing.Process(
            target=_serve_sink, args=(port, self._count, ready), daemon=True
        )
        self._process.start()
        if not ready.wait(30):
            raise RuntimeError("the SMTP sink did not start")

    @property
    def count(self) -> int:
        return self._count.value

    def wait_for(self, count: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self._count.value < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self._count.value} of {count} mails arrived")
            time.sleep(0.0005)

    def stop(self) -> None:
        self._process.terminate()
        self._process.join()


class _Counter:
    def __init__(self, count):
        self.count = count

    async def handle_DATA(self, server, session, envelope):
        with self.count.get_lock():
            self.count.value += 1
        return "250 OK"


def _serve_sink(port: int, count, ready) -> None:
    controller = Controller(_Counter(count), hostname="127.0.0.1", port=port)
    controller.start()
    ready.set()
    threading.Event().wait()


def bare_smtplib(port: int, sink: CountingSink, renderer: Renderer, mails: int) -> float:
    message = renderer.outgoing(
        "verify_email", "en", VALUES, "p0@example.com", uuid.uuid4(), datetime.now(UTC)
    ).data
    start_count = sink.count
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as session:
        for n in range(mails):
            session.sendmail("no-reply@example.com", [f"p{n}@example.com"], message)
    sink.wait_for(start_count + mails)
    return mails / (time.perf_counter() - started)


def courier_rate(conn, courier: Courier, sink: CountingSink, mails: int) -> float:
    with conn.transaction():
        for n in range(mails):
            enqueue(conn, "verify_email", f"p{n}@example.com", "en", **VALUES)
    start_count = sink.count
    started = time.perf_counter()
    courier.deliver_due(conn)
    sink.wait_for(start_count + mails)
    return mails / (time.perf_counter() - started)


def commit_to_arrival(conn, url: str, courier: Courier, sink: CountingSink, samples: int):
    stop = threading.Event()
    worker = threading.Thread(target=courier.run, args=(url, stop))
    worker.start()
    time.sleep(0.5)
    seconds = []
    try:
        for n in range(samples):
            before = sink.count
            with conn.transaction():
                enqueue(conn, "verify_email", f"late{n}@example.com", "en", **VALUES)
            committed = time.perf_counter()
            sink.wait_for(before + 1, timeout=30)
            seconds.append(time.perf_counter() - committed)
            time.sleep(0.1)
    finally:
        stop.set()
        conn.execute("notify identity_outbox")
        worker.join(timeout=30)
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()

    server = start_embedded(PGDATA)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = CountingSink(port)
    try:
        url = ensure_database(server.get_uri(), "identity_bench_mail", fresh=True)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            migrations.upgrade(conn)
            renderer = Renderer("https://id.example.com", SENDER)
            courier = Courier(
                renderer,
                Relay(parse_smtp_url(f"smtp://127.0.0.1:{port}")),
                CourierSettings(poll_seconds=30),
            )
            bare_smtplib(port, sink, renderer, 200)  # warm-up
            baseline = bare_smtplib(port, sink, renderer, args.mails)
            target = courier_rate(conn, courier, sink, args.mails)
            courier.close()
            latencies = commit_to_arrival(conn, url, courier, sink, args.samples)
    finally:
        sink.stop()
        server.cleanup()

    ratio = target / baseline
    median = statistics.median(latencies)
    print(f"bare smtplib loop:  {baseline:8.0f} mails/s")
    print(f"courier (outbox):   {target:8.0f} mails/s")
    print(f"ratio:              {ratio:8.3f}  target >= {THROUGHPUT_TARGET}: "
          f"{'PASS' if ratio >= THROUGHPUT_TARGET else 'FAIL'}")  # fmt: skip
    print(f"commit to arrival:  median {median * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
          f" over {len(latencies)}  target < {LATENCY_TARGET:.0f} s: "
          f"{'PASS' if median < LATENCY_TARGET else 'FAIL'}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
