"""The subscriber export: 1,000,000 rows of one list streamed with their unsubscribe links,
against PostgreSQL's COPY of the same rows' id and email, and the server's peak memory.

    .venv/bin/python bench/newsletter_export.py [--rows 1000000] [--py-spy FILE [--idle]]

The service runs as `identity serve` runs it (bench/harness.py). ROWS people subscribed
to one list are written straight into the database. Baseline: psycopg's `copy` of
`COPY (SELECT id, email FROM <the same join, same order>) TO STDOUT`, every block read.
Target: `GET /v1/newsletters/copernica/subscribers` (NDJSON, then CSV), every byte read
over HTTP and the rows counted, while the gunicorn workers' RSS is sampled every 20 ms.
Best of two runs each; each prints what a row cost in CPU (the workers', PostgreSQL's and
this process's, which reads and counts). Exit 0 whatever the numbers; PASS/FAIL against
the targets.
"""

import argparse
import contextlib
import sys
import threading
import time
import urllib.request
from pathlib import Path

import harness
import psutil
import psycopg

TARGET_RATIO = 0.5
TARGET_PEAK_RSS_MB = 150
ROUNDS = 2

_COPY = """
COPY (
    select u.id, u.email
    from subscriptions s join users u on u.id = s.user_id
    where s.newsletter = 1 and s.state = 'subscribed'
    order by s.user_id
) TO STDOUT
"""


def _subscribers(database_url: str, rows: int) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            """
            with made as (
                insert into users (email, email_key)
                select 'reader' || i || '@example.com', 'reader' || i || '@example.com'
                from generate_series(1, %(rows)s::int) as i
                returning id
            )
            insert into subscriptions (user_id, newsletter, state)
            select id, 1, 'subscribed' from made
            """,
            {"rows": rows},
        )
        conn.execute("vacuum analyze users")
        conn.execute("vacuum analyze subscriptions")


def _copy_rows_per_second(database_url: str) -> tuple[float, int]:
    with psycopg.connect(database_url) as conn, conn.cursor() as cur:
        started, lines = time.perf_counter(), 0
        with cur.copy(_COPY) as copy:
            for block in copy:
                lines += bytes(block).count(b"\n")
        return lines / (time.perf_counter() - started), lines


class PeakRss:
    """The highest RSS of any gunicorn worker while the block runs."""

    def __init__(self, pids: list[int]):
        self.processes = [psutil.Process(pid) for pid in pids]
        self.peak = 0
        self.before = max(p.memory_info().rss for p in self.processes)
        self._stop = threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def _sample(self):
        while not self._stop.is_set():
            for process in self.processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.02)


def _export_rows_per_second(bench, accept: str) -> tuple[float, int, int, str]:
    request = urllib.request.Request(
        f"{bench.base_url}/v1/newsletters/copernica/subscribers",
        headers={"Authorization": f"Bearer {bench.key}", "Accept": accept},
    )
    workers = bench.worker_pids()
    cpu_before = harness.cpu_seconds([*workers, *bench.postgres_pids()])
    own_before = time.process_time()
    with PeakRss(workers) as rss:
        started, lines = time.perf_counter(), 0
        with urllib.request.urlopen(request, timeout=600) as response:
            while block := response.read1(1 << 20):
                lines += block.count(b"\n")
        elapsed = time.perf_counter() - started
    own = time.process_time() - own_before
    used = {
        pid: t - cpu_before.get(pid, 0.0)
        for pid, t in harness.cpu_seconds([*workers, *bench.postgres_pids()]).items()
    }
    lines -= 1  # the closing line
    if accept == "text/csv":
        lines -= 1  # the header row
    per_row = 1e6 / max(lines, 1)
    cpu = (
        f"CPU per row: workers {sum(used.get(p, 0.0) for p in workers) * per_row:.2f}us,"
        f" PostgreSQL {sum(t for p, t in used.items() if p not in workers) * per_row:.2f}us,"
        f" reader {own * per_row:.2f}us"
    )
    return lines / elapsed, lines, rss.peak, cpu


def _parallel_peak_rss(bench, exports: int) -> int:
    """The highest RSS of any worker while `exports` NDJSON exports run at once, each read
    to its end; every export must give every row."""
    counts: list[int] = []

    def one():
        counts.append(_export_rows_per_second(bench, "application/x-ndjson")[1])

    with PeakRss(bench.worker_pids()) as rss:
        threads = [threading.Thread(target=one) for _ in range(exports)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if len(set(counts)) != 1 or len(counts) != exports:
        harness.say(f"WARNING: the parallel exports gave {counts} rows")
    return rss.peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--parallel",
        type=int,
        default=10,
        help="then this many NDJSON exports at once: the workers' peak RSS",
    )
    parser.add_argument(
        "--py-spy", type=Path, help="profile the workers in the last round: FILE-<format>.txt"
    )
    parser.add_argument(
        "--idle", action="store_true", help="with --py-spy: keep waiting samples (wall time)"
    )
    args = parser.parse_args()
    with harness.running_service() as bench:
        started = time.monotonic()
        _subscribers(bench.database_url, args.rows)
        harness.say(f"{args.rows} subscribers written in {time.monotonic() - started:.1f}s")
        results: dict[str, list] = {"COPY": [], "NDJSON": [], "CSV": []}
        for round_no in range(1, ROUNDS + 1):
            results["COPY"].append((*_copy_rows_per_second(bench.database_url), 0, ""))
            for name, accept in (("NDJSON", "application/x-ndjson"), ("CSV", "text/csv")):
                profile = None
                if args.py_spy is not None and round_no == ROUNDS:
                    profile = args.py_spy.with_name(f"{args.py_spy.stem}-{name.lower()}.txt")
                with harness.py_spy(bench, profile, idle=args.idle):
                    results[name].append(_export_rows_per_second(bench, accept))
            harness.say(
                f"round {round_no}: "
                + "  ".join(f"{name} {runs[-1][0]:,.0f} rows/s" for name, runs in results.items())
            )
            for name in ("NDJSON", "CSV"):
                harness.say(f"  {name}: {results[name][-1][3]}")
        parallel_peak = _parallel_peak_rss(bench, args.parallel) if args.parallel else 0
        log = bench.gunicorn_log()
    best = {name: max(runs) for name, runs in results.items()}
    peak = max(rss for runs in results.values() for _, _, rss, _ in runs) / 2**20
    print(f"== subscriber export, {args.rows:,} rows: streamed with links vs COPY id, email ==")
    for name, (rate, lines, _, _) in best.items():
        print(f"  {name:7} {rate:12,.0f} rows/s   ({lines:,} rows)")
        if lines != args.rows:
            print(f"  WARNING: {name} gave {lines:,} rows, not {args.rows:,}")
    for name in ("NDJSON", "CSV"):
        ratio = best[name][0] / best["COPY"][0]
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        print(f"  ratio {name:7} {ratio:6.3f}   (target >= {TARGET_RATIO}): {verdict}")
    verdict = "PASS" if peak < TARGET_PEAK_RSS_MB else "FAIL"
    print(f"  peak worker RSS {peak:6.1f} MB   (target < {TARGET_PEAK_RSS_MB} MB): {verdict}")
    if args.parallel:
        print(
            f"  peak worker RSS with {args.parallel} exports at once:"
            f" {parallel_peak / 2**20:6.1f} MB"
        )
    if "Traceback" in log:
        print("  WARNING: gunicorn logged tracebacks:\n    " + log[-3000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
