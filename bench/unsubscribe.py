"""One-click unsubscribe under load: POST /v1/unsubscribe/<token> against the `select 1`
baseline endpoint, in one run.

    .venv/bin/python bench/unsubscribe.py [--duration 10] [--connections 32]
        [--py-spy FILE [--idle]]

The service runs as `identity serve` runs it (bench/harness.py). PEOPLE people subscribed
to one list are written straight into the database; wrk POSTs RFC 8058's body
(`List-Unsubscribe=One-Click`, form-encoded) to their links, each connection walking its
own share of the tokens (a Lua script reads them from a file). "first clicks": every POST
is a link's first, so each writes the flag and its consent event and commits (durably);
"repeat clicks": the same links again, each a 200 that changes nothing. Baseline and
targets alternate, twice, best of each. Exit 0 whatever the ratio; PASS/FAIL against
TARGET_RATIO for the first clicks.
"""

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

import harness
import psycopg
from lookup import CONNECTIONS, THREADS, _run_wrk

from identity.config import load_config
from identity.security.unsubscribe_tokens import UnsubscribeTokens

TARGET_RATIO = 0.7
ROUNDS = 2
# Enough links that no connection runs out of first clicks in a run.
PEOPLE_PER_ROUND = 120_000

_LUA = """
local tokens = {}
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end
function init(args)
  for line in io.lines(args[1]) do tokens[#tokens + 1] = line end
  step = tonumber(args[2])
  position = id + 1 - step
end
function request()
  position = position + step
  if position > #tokens then position = id + 1 end
  return wrk.format("POST", "/v1/unsubscribe/" .. tokens[position],
    {["Content-Type"] = "application/x-www-form-urlencoded"}, "List-Unsubscribe=One-Click")
end
"""


def _people(database_url: str, n: int, offset: int) -> list[uuid.UUID]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            """
            with made as (
                insert into users (email, email_key)
                select 'click' || i || '@example.com', 'click' || i || '@example.com'
                from generate_series(%(first)s::int, %(last)s::int) as i
                returning id
            )
            insert into subscriptions (user_id, newsletter, state)
            select id, 1, 'subscribed' from made returning user_id
            """,
            {"first": offset + 1, "last": offset + n},
        ).fetchall()
    return [row[0] for row in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="wrk's, for every run")
    parser.add_argument(
        "--py-spy", type=Path, help="profile the workers in the last round: FILE-<run>.txt"
    )
    parser.add_argument(
        "--idle", action="store_true", help="with --py-spy: keep waiting samples (wall time)"
    )
    args = parser.parse_args()
    wrk = harness.wrk_path()
    if wrk is None:
        print("wrk is not installed; install it with: apt-get install -y wrk", file=sys.stderr)
        return 2
    settings = load_config()
    tokens = UnsubscribeTokens(settings["SECRET_KEY"], settings["UNSUBSCRIBE_KEY_ID"])
    workdir = Path(tempfile.mkdtemp(prefix="bench-unsubscribe-"))
    script = workdir / "one_click.lua"
    script.write_text(_LUA)
    results: dict[str, list[dict]] = {"select 1": [], "first clicks": [], "repeat clicks": []}
    with harness.running_service() as bench:
        select1 = f"{bench.base_url}/bench/select1"
        for round_no in range(1, ROUNDS + 1):
            people = _people(bench.database_url, PEOPLE_PER_ROUND, round_no * PEOPLE_PER_ROUND)
            links = workdir / f"tokens-{round_no}.txt"
            links.write_text("".join(tokens.sign(person, 1) + "\n" for person in people))
            load = {"connections": args.connections}
            _run_wrk(wrk, select1, [], 2, **load)
            baseline = harness.with_cpu(
                bench, args.duration, _run_wrk, wrk, select1, [], args.duration, **load
            )
            results["select 1"].append(baseline)
            step = str(THREADS)  # each wrk thread walks its own share of the links
            for name in ("first clicks", "repeat clicks"):
                if name == "repeat clicks":  # the links of the first clicks, all used now
                    _run_wrk(
                        wrk,
                        bench.base_url,
                        [],
                        2,
                        script=script,
                        script_args=[str(links), step],
                        **load,
                    )
                profile = None
                if args.py_spy is not None and round_no == ROUNDS:
                    profile = args.py_spy.with_name(
                        f"{args.py_spy.stem}-{name.replace(' ', '-')}.txt"
                    )
                with harness.py_spy(bench, profile, idle=args.idle):
                    result = harness.with_cpu(
                        bench,
                        args.duration,
                        _run_wrk,
                        wrk,
                        bench.base_url,
                        [],
                        args.duration,
                        script=script,
                        script_args=[str(links), step],
                        **load,
                    )
                results[name].append(result)
            harness.say(
                f"round {round_no}: "
                + "  ".join(f"{name} {runs[-1]['rps']:.0f}/s" for name, runs in results.items())
            )
        log = bench.gunicorn_log()
    best = {name: max(runs, key=lambda r: r["rps"]) for name, runs in results.items()}
    print("== one-click unsubscribe: POST /v1/unsubscribe/<token> vs GET /bench/select1 ==")
    for name, result in best.items():
        print(
            f"  {name:14} {result['rps']:9.0f} req/s   p50 {result['p50']:.2f} ms"
            f"   p99 {result['p99']:.2f} ms   non-2xx/errors {result['errors']}"
        )
        print(f"  {'':14} {harness.cpu_line(result)}")
    for name in ("first clicks", "repeat clicks"):
        ratio = best[name]["rps"] / best["select 1"]["rps"]
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        print(f"  ratio {name:14} {ratio:6.3f}   (target >= {TARGET_RATIO}): {verdict}")
    if "Traceback" in log:
        print("  WARNING: gunicorn logged tracebacks:\n    " + log[-3000:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
