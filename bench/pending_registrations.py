"""Registrations piling up on one address: does each cost more than the one before?

    .venv/bin/python bench/pending_registrations.py [--pending 100]

The service runs as `identity serve` runs it (bench/harness.py), at the production argon2
cost. A stranger registers one address `--pending` times, each from a new IPv6 /64 (so
no limit per client IP stops them), each right after a registration of a fresh address
(the baseline, taken at the same moment: a machine shared with other work slows both
alike); then its owner registers it, after a fresh one again, and proves it with the
mailed link, beside the proof of a fresh address. Printed: the stranger's registrations
against the fresh ones (median ratios of the first ten and the last ten), the owner's,
whether the owner's was mailed, and the two proofs. Exit 0 whatever the numbers: ratios
that stay put mean nothing grows with the pile.
"""

import argparse
import statistics
import time

import harness
import psycopg
import requests
from psycopg.rows import dict_row

PASSWORD = "plum tractor quietly 83 violins"  # noqa: S105 - the bench's own
OWNER = {"client_ip": "198.51.100.20", "user_agent": "bench owner"}


def _register(session, base, email, password, browser) -> float:
    started = time.perf_counter()
    answer = session.post(
        f"{base}/v1/auth/register", json={"email": email, "password": password, **browser}
    )
    answer.raise_for_status()
    return time.perf_counter() - started


def _prove(session, base, token) -> float:
    started = time.perf_counter()
    answer = session.post(f"{base}/v1/auth/verify-email", json={"token": token, **OWNER})
    answer.raise_for_status()
    return time.perf_counter() - started


def _verify_mails(db, email) -> list[str]:
    rows = db.execute(
        "select mail_values->>'token' as token from outbox"
        " where recipient = %s and template = 'verify_email' order by id",
        (email,),
    ).fetchall()
    return [row["token"] for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pending", type=int, default=100)
    args = parser.parse_args()
    with (
        harness.running_service() as bench,
        psycopg.connect(bench.database_url, autocommit=True, row_factory=dict_row) as db,
        requests.Session() as session,
    ):
        session.headers["Authorization"] = f"Bearer {bench.key}"
        base = bench.base_url
        ratios = []
        for n in range(args.pending):
            elsewhere = {"client_ip": f"2001:db8:f00d:{n:x}::1", "user_agent": "bench"}
            fresh = _register(session, base, f"fresh{n}@example.com", PASSWORD, elsewhere)
            browser = {"client_ip": f"2001:db8:bad:{n:x}::1", "user_agent": "bench stranger"}
            pile = _register(session, base, "anna@example.com", f"{PASSWORD} {n}", browser)
            ratios.append(pile / fresh)
        mailed_before = len(_verify_mails(db, "anna@example.com"))
        fresh = _register(session, base, "fresh@example.com", PASSWORD, OWNER)
        owner = _register(session, base, "anna@example.com", PASSWORD, OWNER)
        tokens = _verify_mails(db, "anna@example.com")
        fresh_proof = _prove(session, base, _verify_mails(db, "fresh@example.com")[-1])
        proof = _prove(session, base, tokens[-1])
    print(
        f"the stranger's registrations / a fresh address's, 1-10 and"
        f" {args.pending - 9}-{args.pending} (medians):"
        f" {statistics.median(ratios[:10]):.2f} and {statistics.median(ratios[-10:]):.2f}"
    )
    print(
        f"the owner's registration after {args.pending} pending: {owner * 1000:.0f} ms,"
        f" a fresh address's {fresh * 1000:.0f} ms ({owner / fresh:.2f});"
        f" mailed: {'yes' if len(tokens) > mailed_before else 'NO'}"
    )
    print(
        f"proving the address: {proof * 1000:.0f} ms with {args.pending + 1} registrations,"
        f" a fresh address {fresh_proof * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
