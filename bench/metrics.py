"""What counting costs: GET /v1/users/<id> and GET /v1/me with the request metrics against
the same app without them (bench_app_without_metrics), both served at once on one database.

    .venv/bin/python bench/metrics.py [--duration 10] [--rounds 3]

wrk must be on PATH. The four runs take turns, round after round, each after a warm-up
(every other round the variant without first); the best of each counts. Prints each ratio
with/without; exits 0 whatever the ratios, PASS/FAIL against TARGET_RATIO. On a busy
machine the rates swing more than counting costs: the workers' CPU per request is the
steadier number.
"""

import argparse
import sys

import harness
from accounts import _account, _login
from lookup import CONNECTIONS, THREADS, WARMUP_SECONDS, _make_profile, _ms, _run_wrk

TARGET_RATIO = 0.95


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    wrk = harness.wrk_path()
    if wrk is None:
        print("wrk is not installed; install it with: apt-get install -y wrk", file=sys.stderr)
        return 2

    with (
        harness.running_service() as counted,
        harness.serving_also(counted, "bench_app_without_metrics:app") as uncounted,
    ):
        user_id = _make_profile(counted)
        _account(counted)
        token = _login(counted)["access_token"]
        site = [f"Authorization: Bearer {counted.key}"]
        person = [f"Authorization: Bearer {token}"]
        cases = {
            (target, variant): (server, f"{server.base_url}{path}", headers)
            for target, path, headers in (
                ("look-up", f"/v1/users/{user_id}", site),
                ("GET /v1/me", "/v1/me", person),
            )
            for variant, server in (("with", counted), ("without", uncounted))
        }
        results: dict[tuple, list[dict]] = {name: [] for name in cases}
        for round_no in range(1, args.rounds + 1):
            # Every other round the other variant goes first: neither gains by its turn.
            turns = list(cases.items())
            if round_no % 2 == 0:
                turns = [turns[i ^ 1] for i in range(len(turns))]
            for name, (server, url, headers) in turns:
                _run_wrk(wrk, url, headers, WARMUP_SECONDS)
                result = harness.with_cpu(
                    server, args.duration, _run_wrk, wrk, url, headers, args.duration
                )
                results[name].append(result)
                harness.say(
                    f"round {round_no} {' '.join(name):28} {result['rps']:8.0f} req/s"
                    f"  p50 {_ms(result['p50'])}  errors {result['errors']}"
                    f"  {harness.cpu_line(result)}"
                )

    best = {name: max(runs, key=lambda r: r["rps"]) for name, runs in results.items()}
    print()
    print("== metrics: the same requests with and without the request metrics ==")
    print(
        f"wrk {THREADS} threads, {CONNECTIONS} connections, {args.duration}s runs, best of"
        f" {args.rounds}; gunicorn {harness.WORKERS} workers each"
    )
    for name, result in best.items():
        print(
            f"  {' '.join(name):28} {result['rps']:8.0f} req/s  p50 {_ms(result['p50'])}"
            f"  errors {result['errors']}  {harness.cpu_line(result)}"
        )
    for target in ("look-up", "GET /v1/me"):
        ratio = best[target, "with"]["rps"] / best[target, "without"]["rps"]
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        print(f"  ratio {target:12} with/without {ratio:6.3f} (>= {TARGET_RATIO}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
