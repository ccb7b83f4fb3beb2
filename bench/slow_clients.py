"""Slow clients: how many idle or trickling connections the service holds while it still
answers others quickly.

    .venv/bin/python bench/slow_clients.py [--levels 100,300,1000]

For each level, opens that many connections to the service as `identity serve` runs it
(bench/harness.py: gunicorn, our gevent worker, 2 workers): a third send half a request
line and wait, a third send their headers a byte a second, a third send a JSON body a
byte a second after valid headers. Meanwhile /health/live is asked 100 times, one after
the other; its median, p99 and worst times are printed. PASS when p99 < 100 ms.
"""

import argparse
import contextlib
import resource
import socket
import statistics
import sys
import threading
import time
import urllib.request

import harness

TARGET_MS = 100.0


def _raise_open_files() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _slow_clients(bench, count: int, stop: threading.Event) -> list[socket.socket]:
    host, port = "127.0.0.1", bench.port
    socks = []
    for n in range(count):
        sock = socket.create_connection((host, port))
        kind = n % 3
        if kind == 0:
            sock.sendall(b"GET /health/li")
        elif kind == 1:
            sock.sendall(b"GET /health/live HTTP/1.1\r\n")
        else:
            sock.sendall(
                (
                    f"POST /v1/profiles HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {bench.key}"
                    "\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"
                ).encode()
            )
        socks.append(sock)

    def trickle():
        while not stop.wait(1.0):
            for n, sock in enumerate(socks):
                if n % 3:
                    with contextlib.suppress(OSError):
                        sock.send(b"X" if n % 3 == 1 else b" ")

    threading.Thread(target=trickle, daemon=True).start()
    return socks


def _live_ms(base_url: str, samples: int) -> list[float]:
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        with urllib.request.urlopen(f"{base_url}/health/live", timeout=30) as response:
            response.read()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="100,300,1000")
    parser.add_argument("--samples", type=int, default=100)
    args = parser.parse_args()
    _raise_open_files()
    held = 0
    with harness.running_service() as bench:
        print(f"{'connections':>12} {'median ms':>10} {'p99 ms':>8} {'max ms':>8}")
        for level in (int(n) for n in args.levels.split(",")):
            stop = threading.Event()
            socks = _slow_clients(bench, level, stop)
            time.sleep(1.0)
            times = sorted(_live_ms(bench.base_url, args.samples))
            stop.set()
            for sock in socks:
                sock.close()
            p99 = times[int(len(times) * 0.99) - 1]
            print(f"{level:>12} {statistics.median(times):>10.1f} {p99:>8.1f} {times[-1]:>8.1f}")
            if p99 < TARGET_MS:
                held = level
            time.sleep(1.0)
    print(f"held {held} slow connections with /health/live p99 < {TARGET_MS:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
