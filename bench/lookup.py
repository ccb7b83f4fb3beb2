"""Look-up throughput: GET /v1/users/<id> against a `select 1` baseline in the same app.

    .venv/bin/python bench/lookup.py [--duration 10] [--py-spy FILE [--idle]]

wrk must be on PATH (`apt-get install -y wrk`). Baseline and target run alternately twice,
each after a warm-up; the best of each counts. Exit 0 whatever the ratio; PASS/FAIL is
printed against TARGET_RATIO.
"""

import argparse
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import harness

TARGET_RATIO = 0.7
THREADS = 2
CONNECTIONS = 32
WARMUP_SECONDS = 2
ROUNDS = 2

PROFILE = {
    "email": "bench@example.com",
    "source": "event",
    "first_name": "Bench",
    "last_name": "Mark",
}

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument(
        "--py-spy",
        type=Path,
        help="profile the workers in the last round: FILE-baseline.txt, FILE-target.txt",
    )
    parser.add_argument(
        "--idle", action="store_true", help="with --py-spy: keep waiting samples (wall time)"
    )
    args = parser.parse_args()

    wrk = harness.wrk_path()
    if wrk is None:
        print("wrk is not installed; install it with: apt-get install -y wrk", file=sys.stderr)
        return 2

    with harness.running_service() as bench:
        user_id = _make_profile(bench)
        auth = [f"Authorization: Bearer {bench.key}"]
        cases = {
            "baseline": (f"{bench.base_url}/bench/select1", []),
            "target": (f"{bench.base_url}/v1/users/{user_id}", auth),
        }
        results: dict[str, list[dict]] = {name: [] for name in cases}
        for round_no in range(1, ROUNDS + 1):
            for name, (url, headers) in cases.items():
                _run_wrk(wrk, url, headers, WARMUP_SECONDS)
                profile = None
                if args.py_spy is not None and round_no == ROUNDS:
                    profile = args.py_spy.with_name(f"{args.py_spy.stem}-{name}.txt")
                with harness.py_spy(bench, profile, idle=args.idle):
                    result = harness.with_cpu(
                        bench, args.duration, _run_wrk, wrk, url, headers, args.duration
                    )
                results[name].append(result)
                harness.say(
                    f"round {round_no} {name:8}: {result['rps']:8.0f} req/s"
                    f"  p50 {_ms(result['p50'])}  p99 {_ms(result['p99'])}"
                    f"  errors {result['errors']}  {harness.cpu_line(result)}"
                )
        log = bench.gunicorn_log()

    best = {name: max(runs, key=lambda r: r["rps"]) for name, runs in results.items()}
    ratio = best["target"]["rps"] / best["baseline"]["rps"]
    print()
    print("== lookup: GET /v1/users/<id> vs GET /bench/select1 ==")
    print(
        f"wrk {THREADS} threads, {CONNECTIONS} connections, {args.duration}s runs"
        f" (after {WARMUP_SECONDS}s warm-up), best of {ROUNDS}; gunicorn {harness.WORKERS}"
        " workers (identity/gunicorn_conf.py)"
    )
    for name, label in (("baseline", "baseline /bench/select1"), ("target", "GET /v1/users/<id>")):
        r = best[name]
        print(
            f"  {label:24} {r['rps']:9.0f} req/s   p50 {_ms(r['p50'])}   p99 {_ms(r['p99'])}"
            f"   non-2xx/errors {r['errors']}"
        )
    for name, label in (("baseline", "baseline /bench/select1"), ("target", "GET /v1/users/<id>")):
        print(f"  {label:24} {harness.cpu_line(best[name])}")
    verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    print(f"  ratio target/baseline   {ratio:9.3f}   (target >= {TARGET_RATIO}): {verdict}")
    if any(r["errors"] for runs in results.values() for r in runs):
        print("  WARNING: some requests failed or answered non-2xx; see the counts above")
    if "WORKER TIMEOUT" in log or "Traceback" in log:
        print("  WARNING: gunicorn logged worker timeouts or tracebacks:")
        print("    " + "\n    ".join(log.strip().splitlines()[-20:]))
    return 0


def _make_profile(bench: harness.Bench) -> str:
    request = urllib.request.Request(
        f"{bench.base_url}/v1/profiles",
        data=json.dumps(PROFILE).encode(),
        headers={"Authorization": f"Bearer {bench.key}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        if resp.status not in (200, 201):
            raise RuntimeError(f"POST /v1/profiles answered {resp.status}")
        user_id = json.load(resp)["id"]
    # The target must answer 200 before it is measured.
    check = urllib.request.Request(
        f"{bench.base_url}/v1/users/{user_id}",
        headers={"Authorization": f"Bearer {bench.key}"},
    )
    with urllib.request.urlopen(check, timeout=10) as resp:
        if resp.status != 200 or json.load(resp)["id"] != user_id:
            raise RuntimeError("GET /v1/users/<id> does not answer the profile just made")
    return user_id


def _run_wrk(
    wrk: str,
    url: str,
    headers: list[str],
    seconds: int,
    *,
    script=None,
    script_args: list[str] = (),
    threads: int = THREADS,
    connections: int = CONNECTIONS,
) -> dict:
    command = [wrk, "--threads", str(threads), "--connections", str(connections)]
    command += ["--duration", f"{seconds}s", "--timeout", "5s", "--latency"]
    for header in headers:
        command += ["--header", header]
    if script is not None:
        command += ["--script", str(script)]
    command.append(url)
    if script_args:
        command += ["--", *script_args]
    out = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    return _parse_wrk(out)


def _parse_wrk(out: str) -> dict:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if rps is None:
        raise RuntimeError(f"cannot read wrk's output:\n{out}")
    latency = {
        pct: _to_ms(value, unit)
        for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M)
    }
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        # read errors are how wrk counts a server closing a connection; gunicorn's sync
        # workers close after every response, so only connect/write/timeout count here.
        connect, _read, write, timeout = map(int, socket_errors.groups())
        errors += connect + write + timeout
    return {
        "rps": float(rps.group(1)),
        "p50": latency.get("50"),
        "p99": latency.get("99"),
        "errors": errors,
        "raw": out,
    }


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNITS[unit]


def _ms(value: float | None) -> str:
    return "   n/a  " if value is None else f"{value:6.2f}ms"


if __name__ == "__main__":
    sys.exit(main())
