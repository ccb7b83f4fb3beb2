"""Bulk import throughput: 100,000 NDJSON lines streamed to POST /v1/profiles/import, twice.

    .venv/bin/python bench/import_profiles.py [--lines 100000] [--newsletters]
        [--py-spy FILE [--idle]]

The first run creates every record, the second (the same file) merges every line. Each
prints lines/s (lines / wall seconds from the first byte sent to the last byte of the
report read) and the RSS of the gunicorn workers before, at peak during, and after the
import, sampled every 0.1 s. Exit 0 whatever the rate; PASS/FAIL is printed against
TARGET_RATE.
"""

import argparse
import contextlib
import http.client
import json
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import harness

TARGET_RATE = 20_000
DOMAINS = 50
SAMPLE_SECONDS = 0.1
FIRST_NAMES = ("Anna", "Bob", "Chloé", "Daan", "Emma", "Finn", "Grace", "Hugo", "Iris", "Jan")
LAST_NAMES = ("Berg", "de Vries", "Jansen", "Smit", "Bakker", "Visser", "Mulder", "Bos")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=100_000, help="NDJSON lines to import")
    parser.add_argument(
        "--newsletters",
        action="store_true",
        help="every line brings two newsletter consents over (copernica, smtpeter)",
    )
    parser.add_argument(
        "--py-spy", type=Path, help="profile the workers: FILE-created.txt, FILE-merged.txt"
    )
    parser.add_argument(
        "--idle", action="store_true", help="with --py-spy: keep waiting samples (wall time)"
    )
    args = parser.parse_args()

    with tempfile.NamedTemporaryFile(prefix="identity-import-", suffix=".ndjson") as data:
        size = _generate(Path(data.name), args.lines, newsletters=args.newsletters)
        harness.say(f"generated {args.lines} lines, {size / 1e6:.1f} MB, in {data.name}")
        with harness.running_service() as bench:
            runs = []
            for label, expected in (
                ("first (all new)", "created"),
                ("second (same file)", "merged"),
            ):
                profile = None
                if args.py_spy is not None:
                    profile = args.py_spy.with_name(f"{args.py_spy.stem}-{expected}.txt")
                with harness.py_spy(bench, profile, idle=args.idle):
                    run = _import(bench, Path(data.name), size)
                run["label"] = label
                run["expected"] = expected
                runs.append(run)
                if run["error"]:
                    harness.say(f"{label}: FAILED")
                else:
                    harness.say(f"{label}: {args.lines / run['seconds']:.0f} lines/s")
            log = bench.gunicorn_log()

    print()
    print(
        f"== import: {args.lines} NDJSON lines ({size / 1e6:.1f} MB) to POST /v1/profiles/import =="
    )
    print(f"gunicorn, {harness.WORKERS} workers; RSS of the worker that served the import")
    ok = True
    for run in runs:
        summary = run["summary"] or {}
        counted_ok = (
            summary.get("lines") == args.lines
            and summary.get(run["expected"]) == args.lines
            and run["report_lines"] == args.lines + 1
            and run["status"] == 200
        )
        ok &= counted_ok
        rate = args.lines / run["seconds"]
        verdict = "PASS" if rate >= TARGET_RATE and counted_ok else "FAIL"
        shown = "      n/a" if run["error"] else f"{rate:9.0f}"
        rss = run["rss"]
        print(f"  {run['label']}:")
        print(
            f"    {shown} lines/s  ({run['seconds']:.2f}s wall; target >= {TARGET_RATE}): {verdict}"
        )
        expected = "as expected" if counted_ok else f"NOT {args.lines} {run['expected']}"
        if run["error"]:
            print(f"    FAILED: {run['error']} after {run['seconds']:.1f}s")
        print(
            f"    report: HTTP {run['status']}, {run['report_lines']} lines,"
            f" summary {summary} -> {expected}"
        )
        print(
            f"    worker {rss['pid']} RSS: before {_mb(rss['before'])}, peak {_mb(rss['peak'])}"
            f" (+{_mb(rss['peak'] - rss['before'])}), after {_mb(rss['after'])}"
            f"; other worker(s) peak {', '.join(_mb(v) for v in rss['others_peak']) or '-'}"
            f"; the import helper processes (all workers') peak {_mb(rss['helpers_peak'])} in all"
        )
        print(
            "    each helper's peak RSS: "
            + (", ".join(f"{kind} {_mb(v)}" for kind, v in rss["each_helper_peak"]) or "-")
        )
        print(
            f"    CPU seconds during it: that worker {run['cpu_worker']:.1f},"
            f" the import helper processes {run['cpu_helpers']:.1f},"
            f" PostgreSQL (all its processes) {run['cpu_postgres']:.1f}"
        )
    if "WORKER TIMEOUT" in log or "Traceback" in log:
        print("  WARNING: gunicorn logged worker timeouts or tracebacks:")
        print("    " + "\n    ".join(log.strip().splitlines()[-20:]))
    if not ok:
        print("  WARNING: a report did not count what was sent; see above")
    return 0


def _generate(path: Path, lines: int, *, newsletters: bool = False) -> int:
    """`lines` submissions with unique addresses in mixed case; a phone on every third;
    with `newsletters`, two consents from an old list on every line."""
    rng = random.Random(20261125)
    with open(path, "w", encoding="utf-8") as out:
        for i in range(lines):
            local = f"user{i}"
            domain = f"example{i % DOMAINS}.com"
            address = "".join(c.upper() if rng.random() < 0.3 else c for c in f"{local}@{domain}")
            line = {
                "email": address,
                "first_name": rng.choice(FIRST_NAMES),
                "last_name": rng.choice(LAST_NAMES),
                "source": "import",
            }
            if i % 3 == 0:
                line["phone"] = f"+3120{rng.randrange(2, 10)}{rng.randrange(10**6):06d}"
            if newsletters:
                consent = {"consented_at": "2024-03-01T10:00:00Z", "consent_text": "form v1"}
                line["newsletters"] = {"copernica": consent, "smtpeter": consent}
            out.write(json.dumps(line, ensure_ascii=False) + "\n")
    return path.stat().st_size


def _import(bench: harness.Bench, path: Path, size: int) -> dict:
    """One streamed import while the workers' RSS is sampled; its timing, report and RSS."""
    sampler = _RssSampler(bench.worker_pids())
    before = sampler.sample()
    postgres = bench.postgres_pids()
    helpers = _descendants(list(before))
    cpu_before = harness.cpu_seconds([*before, *postgres, *helpers])
    time.sleep(SAMPLE_SECONDS)
    sampler.start()
    conn = http.client.HTTPConnection("127.0.0.1", bench.port, timeout=600, blocksize=64 * 1024)
    started = time.monotonic()
    status, error, report_lines, last = None, None, 0, None
    try:
        with open(path, "rb") as body:
            # http.client sends a file object in blocksize reads: never the whole body in memory.
            conn.request(
                "POST",
                "/v1/profiles/import",
                body=body,
                headers={
                    "Authorization": f"Bearer {bench.key}",
                    "Content-Type": "application/x-ndjson",
                    "Content-Length": str(size),
                },
            )
        resp = conn.getresponse()
        status = resp.status
        for raw in resp:
            report_lines += 1
            last = raw
    except (OSError, http.client.HTTPException) as exc:
        # e.g. gunicorn killed the worker mid-import (its --timeout) and the socket closed.
        error = f"{type(exc).__name__}: {exc}"
        harness.say(f"import failed after {time.monotonic() - started:.1f}s: {error}")
    finally:
        seconds = time.monotonic() - started
        conn.close()
        sampler.stop()
    cpu_after = harness.cpu_seconds([*before, *bench.postgres_pids(), *helpers])
    cpu = {pid: used - cpu_before.get(pid, 0.0) for pid, used in cpu_after.items()}
    time.sleep(0.5)
    after = sampler.sample()
    summary = None
    if last is not None:
        try:
            summary = json.loads(last).get("summary")
        except ValueError:
            summary = None
    if status is not None and status != 200:
        harness.say(f"import answered HTTP {status}: {last!r}")
    # The worker that served the import is the one whose RSS grew most.
    grew = {pid: sampler.peak.get(pid, 0) - before.get(pid, 0) for pid in before}
    pid = max(grew, key=grew.get) if grew else None
    return {
        "seconds": seconds,
        "status": status,
        "error": error,
        "report_lines": report_lines,
        "summary": summary,
        "cpu_worker": cpu.get(pid, 0.0),
        "cpu_helpers": sum(cpu.get(p, 0.0) for p in helpers),
        "cpu_postgres": sum(
            used for p, used in cpu.items() if p not in before and p not in helpers
        ),
        "rss": {
            "pid": pid,
            "before": before.get(pid, 0),
            "peak": max(sampler.peak.get(pid, 0), before.get(pid, 0)),
            "after": after.get(pid, 0),
            "others_peak": [sampler.peak.get(p, 0) for p in before if p != pid],
            "helpers_peak": sampler.helpers_peak,
            "each_helper_peak": sampler.each_helper_peak(),
        },
    }


class _RssSampler:
    """VmRSS (from /proc/<pid>/status) of the given processes every SAMPLE_SECONDS."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.peak: dict[int, int] = {}
        # The import's helper processes (forkserver and checkers, the workers' descendants):
        # the peak of their summed RSS, and each one's own.
        self.helpers_peak = 0
        self._helper_peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> dict[int, int]:
        return {pid: rss for pid in self.pids if (rss := _vm_rss(pid)) is not None}

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, rss in self.sample().items():
                self.peak[pid] = max(self.peak.get(pid, 0), rss)
            helpers = {pid: _vm_rss(pid) or 0 for pid in _descendants(self.pids)}
            self.helpers_peak = max(self.helpers_peak, sum(helpers.values()))
            for pid, rss in helpers.items():
                self._helper_peaks[pid] = max(self._helper_peaks.get(pid, 0), rss)
            self._stop.wait(SAMPLE_SECONDS)

    def each_helper_peak(self) -> list[tuple[str, int]]:
        """(what the helper is, its peak RSS), the checkers first, largest first."""
        found = [(_helper_kind(pid), rss) for pid, rss in self._helper_peaks.items()]
        return sorted(found, key=lambda item: (item[0] != "checker", -item[1]))


def _descendants(pids: list[int]) -> list[int]:
    import psutil

    found = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            found.extend(child.pid for child in psutil.Process(pid).children(recursive=True))
    return found


def _helper_kind(pid: int) -> str:
    """A checker (forked by a forkserver, so its command line is the forkserver's), the
    forkserver, or multiprocessing's resource tracker."""
    import psutil

    try:
        process = psutil.Process(pid)
        command = " ".join(process.cmdline())
        parent = " ".join(process.parent().cmdline()) if process.parent() else ""
    except psutil.Error:
        return "gone"
    if "resource_tracker" in command:
        return "resource tracker"
    if "forkserver" in command:
        return "checker" if "forkserver" in parent else "forkserver"
    return "other"


def _vm_rss(pid: int) -> int | None:
    """Resident set size in bytes, or None when the process is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _mb(value: int) -> str:
    return f"{value / 2**20:.1f} MiB"


if __name__ == "__main__":
    sys.exit(main())
