"""Accounts speed: logins against bare argon2 verifies, refresh and GET /v1/me against the
`select 1` baseline endpoint, all in one run.

    .venv/bin/python bench/accounts.py [--duration 10]

The service runs as `identity serve` runs it (bench/harness.py: gunicorn, our gevent
worker, 2 workers). One account is made through the API. Logins: wrk POSTs the right
password (each a real login: argon2 verify in gevent's thread pool, an attempt recorded,
a session and a refresh token written, an access token signed); baseline: 2 processes
verifying the same argon2 hash in a loop, no HTTP. Refresh: each wrk connection spends
its own chain of refresh tokens (a Lua script takes the new token from each answer).
GET /v1/me: one access token. Exit 0 whatever the ratios; PASS/FAIL against the targets.
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
TARGETS = {"login": 0.9, "refresh": 0.6, "me": 0.7}
REFRESH_CONNECTIONS = 32  # as many as the baseline's: the same load
WRK_THREADS = 2
# wrk asks each thread's script for one request more than it sends (before connecting):
# a chain per thread more than connections keeps every connection with a live token.
REFRESH_CHAINS = REFRESH_CONNECTIONS + WRK_THREADS

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
    headers = {"Content-Type": "application/json",
               "Authorization": f"Bearer {token or bench.key}"}  # fmt: skip
    request = urllib.request.Request(
        f"{bench.base_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def _account(bench) -> None:
    _call(bench, "POST", "/v1/auth/register", {"email": EMAIL, "password": PASSWORD})
    with psycopg.connect(bench.database_url, row_factory=dict_row) as conn:
        token = conn.execute(
            "select mail_values->>'token' as t from outbox where template = 'verify_email'"
        ).fetchone()["t"]
    _call(bench, "POST", "/v1/auth/verify-email", {"token": token})


def _login(bench) -> dict:
    return _call(bench, "POST", "/v1/auth/login", {"email": EMAIL, "password": PASSWORD})


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
    parser.add_argument("--duration", type=int, default=10)
    args = parser.parse_args()
    wrk = harness.wrk_path()
    if wrk is None:
        print("wrk is not installed; install it with: apt-get install -y wrk", file=sys.stderr)
        return 2
    # Every login of the run is right, but many: no throttle may count them.
    os.environ["IDENTITY_LOGIN_ACCOUNT_FAILURES"] = "1000000"
    results = {}
    with harness.running_service() as bench:
        _account(bench)
        with psycopg.connect(bench.database_url, row_factory=dict_row) as conn:
            stored = conn.execute("select password_hash from users").fetchone()["password_hash"]
        auth = [f"Authorization: Bearer {bench.key}", "Content-Type: application/json"]
        select1 = f"{bench.base_url}/bench/select1"
        _run_wrk(wrk, select1, [], 2)
        results["select 1"] = _run_wrk(wrk, select1, [], args.duration)["rps"]

        login_body = Path(tempfile.mkdtemp()) / "login.lua"
        login_body.write_text(
            'wrk.method = "POST"\n'
            f"wrk.body = '{json.dumps({'email': EMAIL, 'password': PASSWORD})}'\n"
        )
        results["login"] = _run_wrk(
            wrk, f"{bench.base_url}/v1/auth/login", auth, args.duration, script=login_body
        )["rps"]
        results["argon2 verify"] = _bare_verifies_per_second(stored, harness.WORKERS, args.duration)

        me = _login(bench)["access_token"]
        results["GET /v1/me"] = _run_wrk(
            wrk, f"{bench.base_url}/v1/me", [f"Authorization: Bearer {me}"], args.duration
        )["rps"]

        chains = [_login(bench)["refresh_token"] for _ in range(REFRESH_CHAINS)]
        refresh_lua = login_body.with_name("refresh.lua")
        refresh_lua.write_text(_REFRESH_LUA)
        refreshed = _run_wrk(
            wrk, f"{bench.base_url}/v1/auth/refresh", auth, args.duration,
            script=refresh_lua, script_args=[str(WRK_THREADS), *chains],
            threads=WRK_THREADS, connections=REFRESH_CONNECTIONS,
        )  # fmt: skip
        # Only refreshes that gave a new pair count.
        sent = int(re.search(r"(\d+) requests in", refreshed["raw"]).group(1))
        results["refresh"] = refreshed["rps"] * (sent - refreshed["errors"]) / sent
        if refreshed["errors"]:
            print(f"refresh: {refreshed['errors']} of {sent} answers were not 200")

    ratios = {
        "login": results["login"] / results["argon2 verify"],
        "refresh": results["refresh"] / results["select 1"],
        "me": results["GET /v1/me"] / results["select 1"],
    }
    print("== accounts ==")
    for name, rate in results.items():
        print(f"  {name:16} {rate:9.1f} /s")
    for name, ratio in ratios.items():
        verdict = "PASS" if ratio >= TARGETS[name] else "FAIL"
        print(f"  ratio {name:10} {ratio:6.3f}  (target >= {TARGETS[name]}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
