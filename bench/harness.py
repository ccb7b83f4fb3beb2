"""What the benchmarks share: a private embedded PostgreSQL, a fresh database, a site key,
and the app under gunicorn as `identity serve` runs it (2 workers of our gevent worker
class, its access log into a temporary file) on a free loopback port.

Not part of the service: run as `.venv/bin/python bench/<script>.py` from the project root.
"""

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.rows import dict_row

PROJECT_DIR = Path(__file__).resolve().parents[1]
BENCH_DIR = PROJECT_DIR / "bench"
PGDATA = PROJECT_DIR / ".data" / "bench-pg"
DATABASE = "identity_bench"
SITE = "bench.example"
WORKERS = 2
READY_TIMEOUT = 30.0

# For trying a change without touching identity/: another "module:app", e.g. one that
# patches the service and then imports bench_app, found on BENCH_PYTHONPATH.
APP = os.environ.get("BENCH_APP", "bench_app:app")
APP_PATH = os.environ.get("BENCH_PYTHONPATH")

# A throwaway venv holding py-spy, kept out of the project's own venv.
PY_SPY = os.environ.get("BENCH_PY_SPY", "/tmp/pyspy-venv/bin/py-spy")  # noqa: S108


@dataclass
class Bench:
    """A running service: where it answers, the key to call it with, and its processes."""

    base_url: str
    port: int
    key: str
    database_url: str
    gunicorn: subprocess.Popen
    log_path: Path
    postmaster_pid: int

    def worker_pids(self) -> list[int]:
        """gunicorn's worker processes (the master's children)."""
        import psutil

        try:
            return sorted(p.pid for p in psutil.Process(self.gunicorn.pid).children())
        except psutil.NoSuchProcess:
            return []

    def postgres_pids(self) -> list[int]:
        """The embedded PostgreSQL's postmaster and its children (backends, walwriter, ...)."""
        import psutil

        try:
            postmaster = psutil.Process(self.postmaster_pid)
            return [postmaster.pid, *(child.pid for child in postmaster.children())]
        except psutil.NoSuchProcess:
            return []

    def gunicorn_log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def running_service():
    """Embedded PostgreSQL, fresh database, migrations, a site key, gunicorn; all stopped
    (gunicorn with SIGTERM, PostgreSQL with cleanup()) when the block ends."""
    from identity.embedded import ensure_database, start_embedded
    from identity.services.sites import SCOPES, SiteSettings, create_site
    from identity.store import migrations
    from identity.store.transactions import UnitOfWork
    from schemas.newsletters import NEWSLETTER_KEYS

    started = time.monotonic()
    server = start_embedded(PGDATA)
    workdir = Path(tempfile.mkdtemp(prefix="identity-bench-"))
    gunicorn = None
    try:
        url = ensure_database(server.get_uri(), DATABASE, fresh=True)
        with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
            migrations.upgrade(conn)
            uow = UnitOfWork.of(conn)
            # Its pages for its mails' links; every list its own, for the export's and the
            # links' preferences page.
            settings = SiteSettings(pages=f"https://{SITE}", lists=list(NEWSLETTER_KEYS))
            key = uow.run(lambda: create_site(uow, SITE, list(SCOPES), settings))
        port = free_port()
        log_path = workdir / "gunicorn.log"
        gunicorn = _gunicorn(APP, port, url, log_path)
        bench = Bench(
            f"http://127.0.0.1:{port}", port, key, url, gunicorn, log_path, server.get_pid()
        )
        _wait_ready(bench)
        say(
            f"service up in {time.monotonic() - started:.1f}s"
            f" (gunicorn pid {gunicorn.pid}, app {APP})"
        )
        yield bench
    finally:
        if gunicorn is not None:
            _stop(gunicorn)
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def serving_also(bench: Bench, app: str):
    """A second server of `app` ("module:app" in bench/) beside `bench`'s, on the same
    database with the same key: two variants measured in turns under the same load on the
    machine."""
    port = free_port()
    log_path = bench.log_path.with_name(f"gunicorn-{port}.log")
    gunicorn = _gunicorn(app, port, bench.database_url, log_path)
    other = Bench(
        f"http://127.0.0.1:{port}",
        port,
        bench.key,
        bench.database_url,
        gunicorn,
        log_path,
        bench.postmaster_pid,
    )
    try:
        _wait_ready(other)
        yield other
    finally:
        _stop(gunicorn)


def _gunicorn(app: str, port: int, database_url: str, log_path: Path) -> subprocess.Popen:
    """gunicorn with the settings `identity serve` runs with (workers, timeout, access log,
    the import's helper processes started with each worker), on a port of our own."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:identity.gunicorn_conf",
        "--workers",
        str(WORKERS),
        "--bind",
        f"127.0.0.1:{port}",
        "--chdir",
        str(BENCH_DIR),
        *(["--pythonpath", APP_PATH] if APP_PATH else []),
        app,
    ]
    env = {**os.environ, "IDENTITY_DATABASE_URL": database_url}
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=BENCH_DIR
        )


def _wait_ready(bench: Bench) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    last = None
    while time.monotonic() < deadline:
        if bench.gunicorn.poll() is not None:
            raise RuntimeError(f"gunicorn exited early:\n{bench.gunicorn_log()}")
        try:
            with urllib.request.urlopen(f"{bench.base_url}/health/ready", timeout=2) as resp:
                if resp.status == 200:
                    return
                last = resp.status
        except (urllib.error.URLError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise RuntimeError(f"/health/ready did not answer 200 in {READY_TIMEOUT}s ({last})")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds each process has used so far (gone ones left out)."""
    import psutil

    used = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        used[pid] = times.user + times.system
    return used


def with_cpu(bench: Bench, seconds: float, run, *args, **kwargs) -> dict:
    """`run(*args, **kwargs)` (a wrk run of `seconds`: a dict with its rps) with the CPU
    each request cost, in µs:
    the workers', PostgreSQL's and the load generator's (this process's children)."""
    workers, postgres = bench.worker_pids(), bench.postgres_pids()
    before = cpu_seconds([*workers, *postgres])
    children_before = _children_cpu()
    result = run(*args, **kwargs)
    children = _children_cpu() - children_before
    used = {
        pid: t - before.get(pid, 0.0)
        for pid, t in cpu_seconds([*workers, *bench.postgres_pids()]).items()
    }
    done = max(result["rps"] * seconds, 1.0)
    result["cpu_us"] = {
        "workers": 1e6 * sum(used.get(pid, 0.0) for pid in workers) / done,
        "postgres": 1e6 * sum(t for pid, t in used.items() if pid not in workers) / done,
        "wrk": 1e6 * children / done,
    }
    return result


def cpu_line(result: dict) -> str:
    cpu = result["cpu_us"]
    return (
        f"CPU per request: workers {cpu['workers']:.0f}us, PostgreSQL {cpu['postgres']:.0f}us,"
        f" wrk {cpu['wrk']:.0f}us"
    )


def _children_cpu() -> float:
    """CPU seconds used by this process's finished children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk_path() -> str | None:
    return shutil.which("wrk")


@contextlib.contextmanager
def py_spy(bench: Bench, output: Path | None, *, idle: bool = False, rate: int = 200):
    """Sample every worker with py-spy while the block runs; collapsed stacks to `output`.

    `idle` keeps the samples of a worker waiting (for PostgreSQL, for the client): wall
    time rather than CPU time. Does nothing when `output` is None. py-spy is not in the
    project's venv: BENCH_PY_SPY points at one in a throwaway venv.
    """
    if output is None:
        yield
        return
    if not Path(PY_SPY).exists():
        raise SystemExit(f"py-spy not found at {PY_SPY}; set BENCH_PY_SPY")
    command = [
        PY_SPY,
        "record",
        "--pid",
        str(bench.gunicorn.pid),
        "--subprocesses",
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(output),
        "--nonblocking",
    ]
    if idle:
        command.append("--idle")
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # let it attach
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if not output.exists():
            say(f"py-spy wrote nothing: {err.decode(errors='replace')[-2000:]}")
        else:
            say(f"py-spy profile (collapsed stacks) in {output}")
