"""Accounts speed: logins against bare argon2 verifies, refresh and GET /v1/me against the
`select 1` baseline endpoint, all in one run.

    .venv/bin/python bench/accounts.py [--duration 10] [--rounds 3] [--only login,argon2-verify]
        [--py-spy FILE [--idle]]

The service runs as `identity serve` runs it (bench/harness.py: gunicorn, our gevent
worker, 2 workers). One account is made through the API. Logins: wrk POSTs the right
password (each a real login: argon2 verify in gevent's thread pool, an attempt recorded,
a session and a refresh token written, an access token signed); baseline: 2 processes
verifying the same argon2 hash in a loop, no HTTP. Refresh: each wrk connection spends
its own chain of refresh tokens (a Lua script takes the new token from each answer).
GET /v1/me: one access token. The five runs take turns, round after round, and the best
of each counts (a machine shared with other work slows some runs, never speeds one up);
each run prints what a request cost in CPU. Exit 0 whatever the ratios; PASS/FAIL
against the targets.
"""

import argparse
import json
import multiprocessing
import os
import re
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import harness
import psycopg
from lookup import _run_wrk
from psycopg.rows import dict_row

PASSWORD = "plum tractor quietly 83 violins"  # noqa: S105 - the bench account's
EMAIL = "bench@example.com"
# What the site passes on of the person's browser: register and login require client_ip.
BROWSER = {"client_ip": "203.0.113.7", "user_agent": "bench"}
TARGETS = {"login": 0.9, "refresh": 0.6, "me": 0.7}
REFRESH_CONNECTIONS = 32  # as many as the baseline's: the same load
WRK_THREADS = 2
ROUNDS = 3
WARMUP_SECONDS = 2
# wrk asks each thread's script for one request more than it sends (before connecting):
# a chain per thread more than connections keeps every connection with a live token.
REFRESH_CHAINS = REFRESH_CONNECTIONS + WRK_THREADS
# The runs the service answers (the others have no workers to profile).
_SERVED = ("GET /v1/me", "refresh", "login")
_RUNS = ("select 1", *_SERVED, "argon2 verify")
# Each target's run and the baseline it is measured against.
_RATIOS = {
    "login": ("login", "argon2 verify"),
    "refresh": ("refresh", "select 1"),
    "me": ("GET /v1/me", "select 1"),
}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# Each login from its own client IP, as a site's people come from many: right logins in
# flight count against their IP until answered (so that parallel guesses cannot outrun
# the limit), and 32 at once from one address would pass its 20.
_LOGIN_LUA = """
local n = 0
function request()
  n = n + 1
  local ip = string.format("10.%%d.%%d.%%d", math.random(0, 255), n %% 256, math.random(1, 254))
  local body = '{"email": "%(email)s", "password": "%(password)s", "client_ip": "' .. ip
    .. '", "user_agent": "bench"}'
  return wrk.format("POST", nil, nil, body)
end
"""

# Each wrk thread keeps a stack of refresh tokens, one per connection of its own: a
# request takes one off, its answer puts the next one on, so no token is used twice.
_REFRESH_LUA = """
local next_id = 0
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
end
function init(args)
  local threads = tonumber(args[1])
  tokens = {}
  for i = 2, #args do
    if (i - 2) % threads == id then table.insert(tokens, args[i]) end
  end
end
function request()
  local token = table.remove(tokens) or "none-left"
  return wrk.format("POST", "/v1/auth/refresh", nil, '{"refresh_token": "' .. token .. '"}')
end
function response(status, headers, body)
  local fresh = string.match(body, '"refresh_token": ?"([^"]+)"')
  if fresh then table.insert(tokens, fresh) end
end
"""


def _call(bench, method, path, body=None, token=None):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token or bench.key}"}
    request = urllib.request.Request(
        f"{bench.base_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _account(bench) -> None:
    _call(bench, "POST", "/v1/auth/register", {"email": EMAIL, "password": PASSWORD, **BROWSER})
    with psycopg.connect(bench.database_url, row_factory=dict_row) as conn:
        token = conn.execute(
            "select mail_values->>'token' as t from outbox where template = 'verify_email'"
        ).fetchone()["t"]
    _call(bench, "POST", "/v1/auth/verify-email", {"token": token})


def _login(bench) -> dict:
    return _call(bench, "POST", "/v1/auth/login", {"email": EMAIL, "password": PASSWORD, **BROWSER})


def _verify_loop(stored: str, seconds: float, counter) -> None:
    from identity.config import load_config
    from identity.security.passwords import Passwords

    passwords = Passwords.from_settings(load_config())
    deadline = time.monotonic() + seconds
    done = 0
    while time.monotonic() < deadline:
        passwords.verify(stored, PASSWORD)
        done += 1
    with counter.get_lock():
        counter.value += done


def _bare_verifies_per_second(stored: str, processes: int, seconds: float) -> float:
    counter = multiprocessing.Value("q", 0)
    workers = [
        multiprocessing.Process(target=_verify_loop, args=(stored, seconds, counter))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counter.value / seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument(
        "--py-spy", type=Path, help="profile the workers in the last round: FILE-<run>.txt"
    )
    parser.add_argument(
        "--idle", action="store_true", help="with --py-spy: keep waiting samples (wall time)"
    )
    parser.add_argument(
        "--only",
        help="comma-separated runs to make, of: " + ", ".join(_slug(name) for name in _RUNS),
    )
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else {_slug(name) for name in _RUNS}
    if unknown := only - {_slug(name) for name in _RUNS}:
        parser.error(f"no such run: {', '.join(sorted(unknown))}")
    wrk = harness.wrk_path()
    if wrk is None:
        print("wrk is not installed; install it with: apt-get install -y wrk", file=sys.stderr)
        return 2
    # Every login of the run is right, but many: no throttle may count them.
    os.environ["IDENTITY_LOGIN_ACCOUNT_FAILURES"] = "1000000"
    runs: dict[str, list[dict]] = {}
    with harness.running_service() as bench:
        _account(bench)
        with psycopg.connect(bench.database_url, row_factory=dict_row) as conn:
            stored = conn.execute("select password_hash from users").fetchone()["password_hash"]
        scripts = Path(tempfile.mkdtemp())
        (scripts / "login.lua").write_text(_LOGIN_LUA % {"email": EMAIL, "password": PASSWORD})
        (scripts / "refresh.lua").write_text(_REFRESH_LUA)
        cases = {
            name: run
            for name, run in _cases(bench, wrk, stored, scripts, args.duration).items()
            if _slug(name) in only
        }
        for round_no in range(1, args.rounds + 1):
            for name, run in cases.items():
                profile = None
                if args.py_spy is not None and round_no == args.rounds and name in _SERVED:
                    profile = args.py_spy.with_name(f"{args.py_spy.stem}-{_slug(name)}.txt")
                with harness.py_spy(bench, profile, idle=args.idle):
                    result = run()
                runs.setdefault(name, []).append(result)
                cpu = f"  {harness.cpu_line(result)}" if "cpu_us" in result else ""
                harness.say(f"round {round_no} {name:16} {result['rps']:9.1f} /s{cpu}")

    best = {name: max(found, key=lambda r: r["rps"]) for name, found in runs.items()}
    ratios = {
        target: best[run]["rps"] / best[baseline]["rps"]
        for target, (run, baseline) in _RATIOS.items()
        if run in best and baseline in best
    }
    print()
    print(f"== accounts: best of {args.rounds} rounds of {args.duration}s, run alternately ==")
    for name, result in best.items():
        cpu = f"  {harness.cpu_line(result)}" if "cpu_us" in result else ""
        print(f"  {name:16} {result['rps']:9.1f} /s{cpu}")
    for name, ratio in ratios.items():
        verdict = "PASS" if ratio >= TARGETS[name] else "FAIL"
        print(f"  ratio {name:10} {ratio:6.3f}  (target >= {TARGETS[name]}): {verdict}")
    return 0


def _cases(bench, wrk: str, stored: str, scripts: Path, seconds: int) -> dict:
    """Each measurement of a round, by name: a call that runs it once (after a short
    warm-up) and gives its rate."""
    auth = [f"Authorization: Bearer {bench.key}", "Content-Type: application/json"]
    select1 = f"{bench.base_url}/bench/select1"

    def measured(url, headers, **kwargs):
        _run_wrk(wrk, url, headers, WARMUP_SECONDS, **kwargs)
        return harness.with_cpu(bench, seconds, _run_wrk, wrk, url, headers, seconds, **kwargs)

    def me():
        token = _login(bench)["access_token"]
        return measured(f"{bench.base_url}/v1/me", [f"Authorization: Bearer {token}"])

    def refresh():
        # Fresh chains for each run (the warm-up spends some), counting only the 200s.
        chains = [_login(bench)["refresh_token"] for _ in range(REFRESH_CHAINS * 2)]
        url = f"{bench.base_url}/v1/auth/refresh"
        options = {
            "script": scripts / "refresh.lua",
            "threads": WRK_THREADS,
            "connections": REFRESH_CONNECTIONS,
        }
        _run_wrk(
            wrk,
            url,
            auth,
            WARMUP_SECONDS,
            script_args=[str(WRK_THREADS), *chains[:REFRESH_CHAINS]],
            **options,
        )
        result = harness.with_cpu(
            bench,
            seconds,
            _run_wrk,
            wrk,
            url,
            auth,
            seconds,
            script_args=[str(WRK_THREADS), *chains[REFRESH_CHAINS:]],
            **options,
        )
        sent = int(re.search(r"(\d+) requests in", result["raw"]).group(1))
        if result["errors"]:
            harness.say(f"refresh: {result['errors']} of {sent} answers were not 200")
        result["rps"] *= (sent - result["errors"]) / sent
        return result

    def login():
        # Only right logins count: a refused one (a 422, a 429) costs no argon2.
        result = measured(f"{bench.base_url}/v1/auth/login", auth, script=scripts / "login.lua")
        if result["errors"]:
            sent = int(re.search(r"(\d+) requests in", result["raw"]).group(1))
            harness.say(f"login: {result['errors']} of {sent} answers were not 200")
            result["rps"] *= (sent - result["errors"]) / sent
        return result

    return {
        "select 1": lambda: measured(select1, []),
        "GET /v1/me": me,
        "refresh": refresh,
        "login": login,
        "argon2 verify": lambda: {
            "rps": _bare_verifies_per_second(stored, harness.WORKERS, seconds)
        },
    }


if __name__ == "__main__":
    sys.exit(main())
