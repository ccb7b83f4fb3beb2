"""Mail delivery speed: the courier against a bare smtplib loop, to one aiosmtpd sink;
and, with --faults, the faults of issue 19 replayed against real courier processes.

    .venv/bin/python bench/mail_delivery.py [--mails 10000] [--samples 20]
    .venv/bin/python bench/mail_delivery.py --faults [--mails 2000]

Runs on a private embedded PostgreSQL (.data/bench-pg) and an aiosmtpd sink on loopback,
in a process of its own, that counts what it takes. Baseline: one smtplib session
sending the same mail (`--mails` times) with no database and no rendering. Target: the
same number of mails queued in the outbox, delivered by one Courier (claim, render, send
over its SMTP sessions, record). Then the
time from a commit to the arrival at the sink with a courier idle and listening: median
of `--samples`. Exit 0 whatever the numbers; PASS/FAIL is printed against the targets.

--faults: `identity mail deliver` processes with the default settings (4 SMTP sessions,
batches of 100, a 60 s lease) deliver `--mails` mails to an aiosmtpd sink in this process
that keeps each mail's outbox uuid, while the bench terminates the courier's backend,
makes the database read-only for 2 s, kills it with SIGKILL, freezes it with SIGSTOP,
stops it with SIGTERM (and against a relay that never answers), and kills the courier
beside `identity serve`. Each prints the duplicates and how long recovery or the stop took.
"""

import argparse
import multiprocessing
import os
import re
import signal
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import psycopg
from aiosmtpd.controller import Controller
from psycopg import sql
from psycopg.rows import dict_row

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from identity.embedded import ensure_database, start_embedded
from identity.mail import enqueue
from identity.mail.courier import Courier, CourierSettings
from identity.mail.relay import Relay, parse_smtp_url
from identity.mail.render import Branding, Renderer
from identity.services.sites import MailingSite
from identity.store import migrations

PGDATA = Path(__file__).resolve().parents[1] / ".data" / "bench-pg"
THROUGHPUT_TARGET = 0.7
LATENCY_TARGET = 1.0
SENDER = "identity <no-reply@example.com>"
VALUES = {"token": "t" * 43, "valid_hours": 24}
# The site the mails go out as: a person's mail always has one (its brand, sender, pages).
SITE = Branding(
    "copernica.com", "Copernica", "Copernica <no-reply@example.com>", "https://c.example"
)


def bench_site(conn) -> MailingSite:
    """SITE's record, as `identity sites create` leaves it; the outbox's mails name it."""
    row = conn.execute(
        "insert into sites (name, brand, sender, pages_url) values (%s, %s, %s, %s)"
        " on conflict (name) do update set brand = excluded.brand returning id, language",
        (SITE.name, SITE.brand, SITE.sender, SITE.pages),
    ).fetchone()
    return MailingSite(row["id"], SITE.name, SITE.pages, row["language"])


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
        "verify_email", "en", VALUES, "p0@example.com", uuid.uuid4(), datetime.now(UTC), SITE
    ).data
    start_count = sink.count
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as session:
        for n in range(mails):
            session.sendmail("no-reply@example.com", [f"p{n}@example.com"], message)
    sink.wait_for(start_count + mails)
    return mails / (time.perf_counter() - started)


def courier_rate(conn, courier: Courier, sink: CountingSink, mails: int) -> float:
    site = bench_site(conn)
    with conn.transaction():
        for n in range(mails):
            enqueue(conn, "verify_email", f"p{n}@example.com", "en", site, **VALUES)
    start_count = sink.count
    started = time.perf_counter()
    courier.deliver_due(conn)
    sink.wait_for(start_count + mails)
    return mails / (time.perf_counter() - started)


def commit_to_arrival(conn, url: str, courier: Courier, sink: CountingSink, samples: int):
    site = bench_site(conn)
    stop = threading.Event()
    worker = threading.Thread(target=courier.run, args=(url, stop))
    worker.start()
    time.sleep(0.5)
    seconds = []
    try:
        for n in range(samples):
            before = sink.count
            with conn.transaction():
                enqueue(conn, "verify_email", f"late{n}@example.com", "en", site, **VALUES)
            committed = time.perf_counter()
            sink.wait_for(before + 1, timeout=30)
            seconds.append(time.perf_counter() - committed)
            time.sleep(0.1)
    finally:
        stop.set()
        conn.execute("notify identity_outbox")
        worker.join(timeout=30)
    return seconds


# --- the faults of issue 19, replayed ---------------------------------------------------

IDENTITY = Path(sys.executable).with_name("identity")


class RecordingSink:
    """An aiosmtpd server in this process (the couriers are processes of their own) that
    keeps the outbox uuid each mail's Message-ID names, so a mail sent twice shows."""

    def __init__(self, port: int):
        self.ids: list[str] = []
        self._lock = threading.Lock()
        self.url = f"smtp://127.0.0.1:{port}"
        self._controller = Controller(self, hostname="127.0.0.1", port=port)
        self._controller.start()

    async def handle_DATA(self, server, session, envelope):
        found = re.search(rb"^Message-ID: <([^@>]+)@", envelope.content, re.MULTILINE)
        with self._lock:
            self.ids.append(found[1].decode() if found else "?")
        return "250 OK"

    @property
    def count(self) -> int:
        return len(self.ids)

    def distinct(self) -> int:
        return len(set(self.ids))

    def duplicates(self) -> int:
        return len(self.ids) - len(set(self.ids))

    def clear(self) -> None:
        with self._lock:
            self.ids.clear()

    def stop(self) -> None:
        self._controller.stop()


class SilentRelay:
    """Accepts TCP connections on loopback and never says a word."""

    def __init__(self):
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"smtp://127.0.0.1:{self._server.getsockname()[1]}"
        self.accepted = threading.Semaphore(0)
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self._held.append(self._server.accept()[0])
            except OSError:
                return
            self.accepted.release()

    def close(self) -> None:
        self._server.close()
        for conn in self._held:
            conn.close()


def _until(condition, timeout: float = 300.0, step: float = 0.005) -> float:
    """Wait for `condition()`; the monotonic time it became true."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("the replay waited too long")
        time.sleep(step)
    return time.monotonic()


class Replay:
    """One outbox, one sink, courier processes started with the settings of a deployment."""

    def __init__(self, url: str, sink: RecordingSink, relay_url: str, mails: int, log_dir):
        self.url, self.sink, self.relay_url, self.mails = url, sink, relay_url, mails
        self.log_dir = Path(log_dir)
        self.conn = psycopg.connect(url, autocommit=True, row_factory=dict_row)
        self.site = bench_site(self.conn)
        self.started: list[subprocess.Popen] = []

    def env(self, relay_url: str | None = None) -> dict:
        return {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
            "IDENTITY_DATABASE_URL": self.url,
            "IDENTITY_SMTP_URL": relay_url or self.relay_url,
            "IDENTITY_DATA_DIR": str(self.log_dir / "data"),
        }

    def fresh(self, mails: int) -> None:
        self.conn.execute("truncate outbox")
        self.conn.execute("delete from couriers")
        self.sink.clear()
        with self.conn.transaction():
            for n in range(mails):
                enqueue(self.conn, "verify_email", f"p{n}@example.com", "en", self.site, **VALUES)

    def courier(self, relay_url: str | None = None) -> subprocess.Popen:
        log = (self.log_dir / f"courier-{len(self.started)}.log").open("wb")
        process = subprocess.Popen(
            [IDENTITY, "mail", "deliver"], env=self.env(relay_url), stdout=log, stderr=log
        )
        log.close()
        self.started.append(process)
        return process

    def sent(self) -> int:
        return self.conn.execute(
            "select count(*) as n from outbox where status = 'sent'"
        ).fetchone()["n"]

    def courier_pids(self) -> set[int]:
        return {row["pid"] for row in self.conn.execute("select pid from couriers")}

    def terminate_couriers(self) -> None:
        self.conn.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where datname = current_database() and application_name = 'identity-courier'"
        )

    def until_mid_batch(self) -> None:
        """Until a quarter of the mails and half a batch more have arrived: the fault
        comes while a batch is being sent (at a multiple of 100, a courier is claiming)."""
        _until(lambda: self.sink.count >= self.mails // 4 + 50)

    def all_arrived(self, mails: int) -> float:
        return _until(lambda: self.sink.distinct() >= mails)

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
                process.wait(timeout=60)
        self.started.clear()

    # Each returns one line of numbers.

    def backend_terminated(self) -> dict:
        return self._recovery(self.terminate_couriers)

    def read_only_for_2_seconds(self) -> dict:
        def read_only_a_while() -> None:
            change = sql.SQL("alter database {} set default_transaction_read_only = {}")
            name = sql.Identifier(self.conn.info.dbname)
            self.conn.execute(change.format(name, sql.SQL("on")))
            try:
                self.terminate_couriers()
                time.sleep(2)
            finally:
                self.conn.execute(change.format(name, sql.SQL("default")))

        return self._recovery(read_only_a_while)

    def _recovery(self, fault) -> dict:
        """`fault()` mid-batch; how long from its end until outcomes are recorded again,
        and the duplicates once every mail has arrived."""
        self.fresh(self.mails)
        self.courier()
        self.until_mid_batch()
        fault()
        over = time.monotonic()
        before = self.sent()
        recovered = _until(lambda: self.sent() > before + 4)
        self.all_arrived(self.mails)
        self.stop_all()
        return {"duplicates": self.sink.duplicates(), "recovered_s": recovered - over}

    def killed(self) -> dict:
        self.fresh(self.mails)
        first = self.courier()
        self.until_mid_batch()
        first.kill()
        killed = time.monotonic()
        self.courier()  # as `identity serve` does, without its 1 s pause
        done = self.all_arrived(self.mails)
        self.stop_all()
        return {"duplicates": self.sink.duplicates(), "all_delivered_s": done - killed}

    def frozen(self) -> dict:
        self.fresh(self.mails)
        first = self.courier()
        self.until_mid_batch()
        first.send_signal(signal.SIGSTOP)
        frozen = time.monotonic()
        self.courier()
        done = self.all_arrived(self.mails)
        first.send_signal(signal.SIGCONT)
        time.sleep(2)  # would the frozen one, woken, send what it had claimed?
        self.stop_all()
        return {"duplicates": self.sink.duplicates(), "all_delivered_s": done - frozen}

    def stopped(self) -> dict:
        self.fresh(self.mails * 2)
        courier = self.courier()
        self.until_mid_batch()
        before = self.sink.count
        courier.terminate()
        asked = time.monotonic()
        courier.wait(timeout=120)
        took = time.monotonic() - asked
        time.sleep(0.2)
        left = self.conn.execute(
            "select count(*) filter (where status = 'sending') as sending,"
            " count(*) filter (where status = 'queued' and next_attempt_at <= now()) as due"
            " from outbox"
        ).fetchone()
        self.stop_all()
        return {
            "stop_s": took,
            "mails_after_sigterm": self.sink.count - before,
            "left_sending": left["sending"],
            "left_due": left["due"],
        }

    def stopped_against_a_silent_relay(self) -> dict:
        relay = SilentRelay()
        try:
            self.fresh(20)
            courier = self.courier(relay.url)
            if not relay.accepted.acquire(timeout=60):
                raise RuntimeError("the courier never reached the silent relay")
            time.sleep(0.5)
            courier.terminate()
            asked = time.monotonic()
            courier.wait(timeout=600)
            took = time.monotonic() - asked
        finally:
            relay.close()
            self.stop_all()
        return {"stop_s": took}

    def killed_beside_serve(self) -> dict:
        self.fresh(0)
        env = self.env() | {"PORT": str(_free_port())}
        log = (self.log_dir / "serve.log").open("wb")
        serve = subprocess.Popen(
            [IDENTITY, "serve", "--workers", "1"], env=env, stdout=log, stderr=log
        )
        log.close()
        try:
            _until(self.courier_pids, timeout=120, step=0.05)
            (first,) = self.courier_pids()
            os.kill(first, signal.SIGKILL)
            killed = time.monotonic()
            with self.conn.transaction():
                enqueue(self.conn, "verify_email", "late@example.com", "en", self.site, **VALUES)
            back = _until(lambda: self.courier_pids() - {first}, timeout=120, step=0.01)
            arrived = _until(lambda: self.sink.count >= 1, timeout=120)
        finally:
            serve.terminate()
            serve.wait(timeout=60)
        return {"courier_back_s": back - killed, "mail_arrived_s": arrived - killed}

    def close(self) -> None:
        self.stop_all()
        self.conn.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def replay_faults(mails: int) -> None:
    server = start_embedded(PGDATA)
    sink = RecordingSink(_free_port())
    try:
        url = ensure_database(server.get_uri(), "identity_bench_mail", fresh=True)
        with psycopg.connect(url, autocommit=True) as conn:
            migrations.upgrade(conn)
        with tempfile.TemporaryDirectory() as logs:
            replay = Replay(url, sink, sink.url, mails, logs)
            try:
                for fault in (
                    replay.backend_terminated,
                    replay.read_only_for_2_seconds,
                    replay.killed,
                    replay.frozen,
                    replay.stopped,
                    replay.stopped_against_a_silent_relay,
                    replay.killed_beside_serve,
                ):
                    numbers = fault()
                    shown = ", ".join(
                        f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                        for k, v in numbers.items()
                    )
                    print(f"{fault.__name__ + ':':32} {shown}", flush=True)
            finally:
                replay.close()
    finally:
        sink.stop()
        server.cleanup()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mails", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--faults", action="store_true", help="replay the faults of issue 19")
    args = parser.parse_args()
    if args.faults:
        replay_faults(args.mails if args.mails != parser.get_default("mails") else 2000)
        return 0

    server = start_embedded(PGDATA)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = CountingSink(port)
    try:
        url = ensure_database(server.get_uri(), "identity_bench_mail", fresh=True)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            migrations.upgrade(conn)
            renderer = Renderer(SENDER)
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
    print(
        f"ratio:              {ratio:8.3f}  target >= {THROUGHPUT_TARGET}: "
        f"{'PASS' if ratio >= THROUGHPUT_TARGET else 'FAIL'}"
    )
    print(
        f"commit to arrival:  median {median * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms"
        f" over {len(latencies)}  target < {LATENCY_TARGET:.0f} s: "
        f"{'PASS' if median < LATENCY_TARGET else 'FAIL'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
