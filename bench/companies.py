"""Companies speed: GET /v1/companies/<id> (as a member) and a partner's
GET /v1/companies/<id>/customers (a page of 50) against the `select 1` baseline.

    .venv/bin/python bench/companies.py [--duration 10] [--rounds 2] [--py-spy FILE [--idle]]

The service runs as `identity serve` runs it (bench/harness.py). Three accounts are made
through the API (register, the verify-email link from the outbox, login): a customer
company's admin, who makes the company (POST /v1/companies) and invites the second
(POST /v1/companies/<id>/invitations; accepted with the mailed token), and a partner
company's admin, whose company is flagged as partner. The customer company chooses the
partner (PUT /v1/companies/<id>/partner). For speed the rest goes into the database
directly: 18 more members of the customer company (profiles made through the API), and
60 more customer companies that chose the partner, 3 members each, so the first page of
customers is full. The measured requests go through the API with real access tokens.
Baseline and targets take turns, round after round, each after a warm-up; the best of
each counts. Exit 0 whatever the ratios; PASS/FAIL against TARGET_RATIO.
"""

import argparse
import json
import sys
import urllib.request
from pathlib import Path

import harness
import psycopg
from lookup import _ms, _run_wrk
from psycopg.rows import dict_row

TARGET_RATIO = 0.6
ROUNDS = 2
WARMUP_SECONDS = 2
PAGE = 50
EXTRA_MEMBERS = 18  # besides the admin and the invited member: 20 people
CUSTOMERS = 60  # besides the customer company above: more than a page
CUSTOMER_MEMBERS = 3
PASSWORD = "plum tractor quietly 83 violins"  # noqa: S105 - the bench accounts'
BROWSER = {"client_ip": "203.0.113.7", "user_agent": "bench"}
FIELDS = {
    "street": "Herengracht",
    "house_number": "101-A",
    "postal_code": "1015 BE",
    "city": "Amsterdam",
    "province": "Noord-Holland",
    "country": "NL",
    "attention_of": "Accounts payable",
    "email": "info@acme.example",
    "phone": "+31201234567",
    "vat_number": "NL004495445B01",
    "bank_account": "NL91ABNA0417164300",
}
_LABELS = {
    "baseline": "baseline /bench/select1",
    "company": "GET /v1/companies/<id>",
    "customers": "GET …/customers?limit=50",
}


def _call(bench, method, path, body=None, token=None):
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token or bench.key}"}
    request = urllib.request.Request(
        f"{bench.base_url}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        headers=headers,
        method=method,
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null"), response.headers


def _mailed_token(bench, template: str, recipient: str) -> str:
    with psycopg.connect(bench.database_url, row_factory=dict_row) as conn:
        return conn.execute(
            "select mail_values->>'token' as t from outbox"
            " where template = %s and recipient = %s order by id desc limit 1",
            (template, recipient),
        ).fetchone()["t"]


def _account(bench, email: str) -> str:
    """A registered account with a proven address; its access token."""
    _call(bench, "POST", "/v1/auth/register", {"email": email, "password": PASSWORD, **BROWSER})
    token = _mailed_token(bench, "verify_email", email)
    _call(bench, "POST", "/v1/auth/verify-email", {"token": token})
    login, _ = _call(
        bench, "POST", "/v1/auth/login", {"email": email, "password": PASSWORD, **BROWSER}
    )
    return login["access_token"]


def _profiles(bench, prefix: str, count: int) -> list[str]:
    ids = []
    for n in range(count):
        body = {
            "email": f"{prefix}{n}@example.com",
            "source": "event",
            "first_name": f"Person{n}",
            "last_name": prefix.title(),
            "phone": f"+312012{n:05d}",
        }
        ids.append(_call(bench, "POST", "/v1/profiles", body)[0]["id"])
    return ids


def _set_up(bench) -> dict:
    """The companies and people; the ids and tokens the measured requests use."""
    admin = _account(bench, "admin@customer.example")
    member = _account(bench, "member@customer.example")
    partner_admin = _account(bench, "admin@partner.example")

    company, _ = _call(
        bench, "POST", "/v1/companies", {"name": "Customer B.V.", **FIELDS}, token=admin
    )
    _call(
        bench,
        "POST",
        f"/v1/companies/{company['id']}/invitations",
        {"email": "member@customer.example", "role": "member"},
        token=admin,
    )
    invitation = _mailed_token(bench, "company_invitation", "member@customer.example")
    _call(bench, "POST", "/v1/me/invitations/accept", {"token": invitation}, token=member)

    partner, _ = _call(
        bench, "POST", "/v1/companies", {"name": "Partner B.V.", **FIELDS}, token=partner_admin
    )
    staff = _profiles(bench, "staff", EXTRA_MEMBERS)
    people = _profiles(bench, "customer", CUSTOMERS * CUSTOMER_MEMBERS)
    with psycopg.connect(bench.database_url, row_factory=dict_row) as conn:
        conn.execute("update companies set is_partner = true where id = %s", (partner["id"],))
        conn.execute(
            "insert into company_members (company_id, user_id, role)"
            " select %s, unnest(%s::uuid[]), 'member'",
            (company["id"], staff),
        )
        names = [f"Customer {n:02d} B.V." for n in range(CUSTOMERS)]
        ids = [
            row["id"]
            for row in conn.execute(
                f"""
                insert into companies (name, {", ".join(FIELDS)}, partner_id)
                select name, {", ".join(f"%({f})s" for f in FIELDS)}, %(partner)s
                from unnest(%(names)s::text[]) as name
                returning id
                """,  # noqa: S608 - column names from FIELDS
                {**FIELDS, "partner": partner["id"], "names": names},
            ).fetchall()
        ]
        conn.execute(
            "insert into company_members (company_id, user_id, role)"
            " select c, u, case when n %% %(each)s = 0 then 'admin' else 'member' end"
            " from unnest(%(companies)s::uuid[], %(users)s::uuid[])"
            " with ordinality as t(c, u, n)",
            {
                "each": CUSTOMER_MEMBERS,
                "companies": [i for i in ids for _ in range(CUSTOMER_MEMBERS)],
                "users": people,
            },
        )
        conn.execute("analyze companies; analyze company_members; analyze users")
    _call(
        bench,
        "PUT",
        f"/v1/companies/{company['id']}/partner",
        {"partner_id": partner["id"]},
        token=admin,
    )

    # Both targets must answer what they are meant to before they are measured.
    found, _ = _call(bench, "GET", f"/v1/companies/{company['id']}", token=member)
    if found["id"] != company["id"] or found["your_role"] != "member":
        raise RuntimeError(f"GET /v1/companies/<id> answered {found}")
    members, _ = _call(bench, "GET", f"/v1/companies/{company['id']}/members", token=member)
    if len(members) != EXTRA_MEMBERS + 2:
        raise RuntimeError(f"the customer company has {len(members)} members")
    page, headers = _call(
        bench,
        "GET",
        f"/v1/companies/{partner['id']}/customers?limit={PAGE}",
        token=partner_admin,
    )
    if len(page) != PAGE or "Link" not in headers or not all(c["members"] for c in page):
        raise RuntimeError(f"the customers page has {len(page)} companies, Link {headers['Link']}")
    harness.say(
        f"set up: company {company['id']} ({len(members)} members), partner {partner['id']}"
        f" ({CUSTOMERS + 1} customers, a page of {len(page)} with"
        f" {sum(len(c['members']) for c in page)} people)"
    )
    return {
        "company": company["id"],
        "partner": partner["id"],
        "member": member,
        "partner_admin": partner_admin,
    }


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
    args = parser.parse_args()
    wrk = harness.wrk_path()
    if wrk is None:
        print("wrk is not installed; install it with: apt-get install -y wrk", file=sys.stderr)
        return 2

    results: dict[str, list[dict]] = {}
    with harness.running_service() as bench:
        made = _set_up(bench)
        base = bench.base_url
        cases = {
            "baseline": (f"{base}/bench/select1", []),
            "company": (
                f"{base}/v1/companies/{made['company']}",
                [f"Authorization: Bearer {made['member']}"],
            ),
            "customers": (
                f"{base}/v1/companies/{made['partner']}/customers?limit={PAGE}",
                [f"Authorization: Bearer {made['partner_admin']}"],
            ),
        }
        for round_no in range(1, args.rounds + 1):
            for name, (url, headers) in cases.items():
                _run_wrk(wrk, url, headers, WARMUP_SECONDS)
                profile = None
                if args.py_spy is not None and round_no == args.rounds:
                    profile = args.py_spy.with_name(f"{args.py_spy.stem}-{name}.txt")
                with harness.py_spy(bench, profile, idle=args.idle):
                    result = harness.with_cpu(
                        bench, args.duration, _run_wrk, wrk, url, headers, args.duration
                    )
                results.setdefault(name, []).append(result)
                harness.say(
                    f"round {round_no} {name:9}: {result['rps']:8.0f} req/s"
                    f"  p50 {_ms(result['p50'])}  p99 {_ms(result['p99'])}"
                    f"  errors {result['errors']}  {harness.cpu_line(result)}"
                )
        log = bench.gunicorn_log()

    best = {name: max(runs, key=lambda r: r["rps"]) for name, runs in results.items()}
    print()
    print("== companies: GET /v1/companies/<id>, a partner's customers vs /bench/select1 ==")
    print(
        f"wrk 2 threads, 32 connections, {args.duration}s runs (after {WARMUP_SECONDS}s"
        f" warm-up), best of {args.rounds}; gunicorn {harness.WORKERS} workers"
    )
    for name, label in _LABELS.items():
        r = best[name]
        print(
            f"  {label:26} {r['rps']:9.0f} req/s   p50 {_ms(r['p50'])}   p99 {_ms(r['p99'])}"
            f"   non-2xx/errors {r['errors']}"
        )
    for name, label in _LABELS.items():
        print(f"  {label:26} {harness.cpu_line(best[name])}")
    for name in ("company", "customers"):
        ratio = best[name]["rps"] / best["baseline"]["rps"]
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        print(f"  ratio {name:9} {ratio:6.3f}  (target >= {TARGET_RATIO}): {verdict}")
    if any(r["errors"] for runs in results.values() for r in runs):
        print("  WARNING: some requests failed or answered non-2xx; see the counts above")
    if "WORKER TIMEOUT" in log or "Traceback" in log:
        print("  WARNING: gunicorn logged worker timeouts or tracebacks:")
        print("    " + "\n    ".join(log.strip().splitlines()[-20:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
