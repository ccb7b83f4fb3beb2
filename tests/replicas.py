"""Replicas of `identity serve` behind HAProxy (deploy/haproxy.cfg), and a load of many
clients through it, for tests/test_replicas.py."""

import csv
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import PROJECT_DIR
from tests.test_cli import IDENTITY, free_port

HAPROXY_CONFIG = PROJECT_DIR / "deploy" / "haproxy.cfg"


class Replica:
    """One `identity serve` on its own port, in a process group of its own, so that a
    SIGKILL takes all of it (the server, gunicorn, its worker, the courier) as a crash of
    its machine would."""

    def __init__(self, name: str, env: dict, log: Path):
        self.name = name
        self.port = free_port()
        self.env = env | {"PORT": str(self.port)}
        self.log = log
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                [IDENTITY, "serve", "--workers", "1"],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL to every process of the replica at once; returns once its port refuses
        connections (the kernel takes a moment to end a process: until then its listening
        socket still takes connections, which are reset with it)."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        wait_until(self._refuses, 10, f"{self.name}'s port closed", 0.001)

    def _refuses(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except ConnectionRefusedError:
            return True
        return False

    def terminate(self, timeout: float = 60) -> int:
        """SIGTERM, as an orchestrator stops it; its exit code once it has stopped."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.terminate(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()


class Proxy:
    """HAProxy with the shipped config, in the foreground, and its runtime API."""

    def __init__(self, folder: Path, replicas: list[Replica], port: int):
        self.port = port
        self.socket_path = str(folder / "haproxy.sock")
        self.env = {
            **os.environ,
            "IDENTITY_PROXY_BIND": f"127.0.0.1:{self.port}",
            "IDENTITY_PROXY_ADMIN_SOCKET": self.socket_path,
            **{f"IDENTITY_REPLICA_{n}": r.address for n, r in enumerate(replicas, 1)},
        }
        self.log = folder / "haproxy.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                ["haproxy", "-db", "-f", str(HAPROXY_CONFIG)],
                env=self.env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._answers, 10, "HAProxy's runtime API")

    def _answers(self) -> bool:
        try:
            return bool(self.ask("show info"))
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def ask(self, command: str) -> str:
        """One command to the runtime API, and its answer."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(self.socket_path)
            sock.sendall(command.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict]:
        """Each replica's row of `show stat`: `status` (UP, DOWN, ...), `req_tot`, ..."""
        text = self.ask("show stat").lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {
            row["svname"]: row
            for row in rows
            if row["pxname"] == "replicas" and row["svname"] not in ("BACKEND", "FRONTEND")
        }

    def status(self, name: str) -> str:
        return self.servers()[name]["status"]

    def requests_served(self) -> dict[str, int]:
        return {name: int(row["req_tot"] or 0) for name, row in self.servers().items()}

    def wait_for(self, name: str, status: str, seconds: float = 60) -> float:
        """Seconds until HAProxy says replica `name` is `status`."""
        began = time.monotonic()
        wait_until(lambda: self.status(name) == status, seconds, f"{name} {status}", 0.02)
        return time.monotonic() - began


def wait_until(check, seconds: float, what: str, pause: float = 0.1):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(pause)
    raise AssertionError(f"waited {seconds} s for {what}")


@dataclass
class Outcome:
    began: float
    ended: float
    failure: str | None  # None: answered as expected


@dataclass
class Load:
    """`clients` threads, each sending requests one after the other over a kept-alive
    connection to the proxy: a record's look-up, then a new minimal profile, and so on.
    A failure is an error on the wire or an answer other than the one expected."""

    port: int
    key: str
    user_id: str
    clients: int = 8
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self):
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._client, args=(n,), daemon=True)
            for n in range(self.clients)
        ]

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def failures(self) -> list[Outcome]:
        with self._lock:
            return [outcome for outcome in self.outcomes if outcome.failure]

    def sent(self) -> int:
        with self._lock:
            return len(self.outcomes)

    def _client(self, number: int) -> None:
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "application/json"}
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = 0
        while not self._stop.is_set():
            sent += 1
            if sent % 2:
                method, path, body, expected = "GET", f"/v1/users/{self.user_id}", None, {200}
            else:
                profile = {"email": f"load-{number}-{sent}@example.com", "source": "event"}
                method, path, body, expected = "POST", "/v1/profiles", profile, {200, 201}
            began = time.monotonic()
            try:
                conn.request(method, path, json.dumps(body) if body else None, headers)
                answer = conn.getresponse()
                answer.read()
                failure = None if answer.status in expected else f"{method} {answer.status}"
            except (OSError, http.client.HTTPException) as error:
                failure = f"{method} {type(error).__name__}"
                conn.close()
            with self._lock:
                self.outcomes.append(Outcome(began, time.monotonic(), failure))
        conn.close()
