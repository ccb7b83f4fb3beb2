"""Hostile review of issue 24 (staff, impersonation, the trail, export, erasure), round b:
what a hostile client and a confused new user try. The defects it found (two HIGH, five
MEDIUM, four LOW), each marked "Mended", and the checks that held."""

import pytest

from tests.api.problems import assert_problem
from tests.api.test_accounts import BROWSER, PASSWORD, as_user, login, sign_up
from tests.api.test_admin import WHY, trail
from tests.api.test_erasure import traces
from tests.api.test_second_factor import next_code, set_up, turn_on
from tests.api.test_staff import staff_member


def _id_of(conn, email: str):
    return conn.execute("select id from users where email = %s", (email,)).fetchone()["id"]


def _impersonate(app, staff, user_id):
    given = staff.post(f"/v1/admin/users/{user_id}/impersonate", query_string={"reason": WHY})
    assert given.status_code == 200, given.get_data(as_text=True)
    return as_user(app, given.get_json()["access_token"])


@pytest.fixture
def anna(site, conn):
    return sign_up(site, conn, first_name="Anna", last_name="de Vries")


# --- impersonation ---------------------------------------------------------------------------


# Mended (hostile round 24b).
def test_an_impersonation_does_not_end_the_persons_other_sign_ins(app, site, conn, anna):
    phone = login(site).get_json()
    support, _, _ = staff_member(app, site, conn)
    as_anna = _impersonate(app, support, anna["id"])
    sessions = as_user(app, phone["access_token"]).get("/v1/me/sessions").get_json()
    others = [s["id"] for s in sessions if s["site"] == "copernica.com"]
    ended = as_anna.delete(f"/v1/me/sessions/{others[-1]}")
    assert_problem(ended, 403)
    assert as_user(app, phone["access_token"]).get("/v1/me").status_code == 200


def test_the_person_sees_and_ends_an_impersonation(app, site, conn, anna):
    me = as_user(app, login(site).get_json()["access_token"])
    support, _, _ = staff_member(app, site, conn)
    as_anna = _impersonate(app, support, anna["id"])
    impersonation = conn.execute(
        "select id from sessions where impersonated_by is not null"
    ).fetchone()["id"]
    listed = [s["id"] for s in me.get("/v1/me/sessions").get_json()]
    assert str(impersonation) in listed
    assert me.delete(f"/v1/me/sessions/{impersonation}").status_code == 204
    assert_problem(as_anna.get("/v1/me"), 401)
    # No refresh token exists for it: nothing in refresh_tokens names its session.
    assert (
        conn.execute(
            "select count(*) from refresh_tokens where session_id = %s", (impersonation,)
        ).fetchone()["count"]
        == 0
    )


# Mended (hostile round 24b).
def test_support_does_not_export_through_an_impersonation(app, site, conn, anna):
    support, _, _ = staff_member(app, site, conn)
    assert_problem(
        support.get(f"/v1/admin/users/{anna['id']}/export", query_string={"reason": WHY}), 403
    )
    as_anna = _impersonate(app, support, anna["id"])
    assert_problem(as_anna.get("/v1/me/export"), 403)


# Mended (hostile round 24b).
def test_an_impersonation_does_not_give_consent_nor_lift_the_suppression(app, site, conn):
    sign_up(site, conn)
    me = as_user(app, login(site).get_json()["access_token"])
    assert me.delete("/v1/me", json={"current_password": PASSWORD, **BROWSER}).status_code == 204
    again = sign_up(site, conn)  # the same address, a new record
    support, _, _ = staff_member(app, site, conn)
    as_anna = _impersonate(app, support, again["id"])
    answer = as_anna.put(
        "/v1/me/newsletters/copernica-updates", json={"subscribed": True, **BROWSER}
    )
    held = conn.execute("select count(*) from suppressed_addresses").fetchone()["count"]
    assert answer.status_code == 403 or held == 1


# Mended (hostile round 24b).
def test_revoking_the_staff_role_ends_the_impersonations_it_made(app, site, conn, anna):
    support, _, _ = staff_member(app, site, conn)
    as_anna = _impersonate(app, support, anna["id"])
    conn.execute("delete from staff_roles")
    assert_problem(support.get(f"/v1/admin/users/{anna['id']}", query_string={"reason": WHY}), 403)
    assert_problem(as_anna.get("/v1/me"), 401)


# Mended (hostile round 24b).
def test_removing_the_staff_factor_ends_the_impersonations_it_made(app, site, conn, anna):
    support, _, app_ = staff_member(app, site, conn)
    as_anna = _impersonate(app, support, anna["id"])
    body = {"current_password": PASSWORD, "code": next_code(app_, conn), **BROWSER}
    assert support.delete("/v1/me/second-factor/totp", json=body).status_code == 204
    assert_problem(support.get(f"/v1/admin/users/{anna['id']}", query_string={"reason": WHY}), 403)
    assert_problem(as_anna.get("/v1/me"), 401)


def test_an_impersonation_is_refused_what_takes_the_account_and_all_staff_work(
    app, site, conn, anna
):
    me = as_user(app, login(site).get_json()["access_token"])
    app_ = set_up(me)
    turn_on(me, app_)
    support, _, _ = staff_member(app, site, conn)
    as_anna = _impersonate(app, support, anna["id"])
    code = {"current_password": PASSWORD, "code": next_code(app_, conn), **BROWSER}
    for method, path, body in (
        ("delete", "/v1/me/second-factor/totp", code),
        ("post", "/v1/me/second-factor/totp/confirm", {"code": "123456"}),
        ("delete", "/v1/me", {**BROWSER}),
        ("delete", "/v1/me/identities/google", None),
    ):
        assert_problem(getattr(as_anna, method)(path, json=body), 403)
    anna_id = anna["id"]
    for method, path in (
        ("get", "/v1/admin/users"),
        ("get", f"/v1/admin/users/{anna_id}"),
        ("get", f"/v1/admin/users/{anna_id}/export"),
        ("post", f"/v1/admin/users/{anna_id}/impersonate"),
        ("delete", f"/v1/admin/users/{anna_id}"),
        ("get", "/v1/admin/audit"),
    ):
        answer = getattr(as_anna, method)(path, query_string={"reason": WHY, "q": "a"})
        assert_problem(answer, 403)
    assert me.get("/v1/me/second-factor").get_json()["totp"] is True
    assert conn.execute("select 1 from users where id = %s", (anna_id,)).fetchone()
    # Staff reads of company data are not the impersonation's either.
    company = me.post("/v1/companies", json={"name": "Acme B.V."}).get_json()
    seen = as_anna.get(f"/v1/companies/{company['id']}").get_json()
    assert seen["your_role"] == "admin" and "internal_description" not in seen


# --- reason, search, cursors, the trail's filters ------------------------------------------


@pytest.mark.parametrize(
    "reason",
    [
        "ab",
        "nul\x00here",
        "bidi \u202e reversed",
        "zero\u200bwidth",
        "x" * 501,
        "y" * 100_000,
    ],
    ids=["short", "nul", "bidi", "zwsp", "501", "100k"],
)
def test_a_bad_reason_is_a_422_and_recorded_nothing_read(app, site, conn, anna, reason):
    support, _, _ = staff_member(app, site, conn)
    answer = support.get(f"/v1/admin/users/{anna['id']}", query_string={"reason": reason})
    assert_problem(answer, 422, "reason")
    assert trail(conn, event="staff.read") == []
    assert [r["details"]["reason"] for r in trail(conn, event="staff.refused")] == [
        "invalid_request"
    ]


def test_a_lone_surrogate_or_bad_utf8_reason_never_reaches_the_trail_raw(app, site, conn, anna):
    """Bytes that are not UTF-8 arrive as U+FFFD (werkzeug decodes with replacement): no
    500, and what the trail keeps is valid text."""
    support, _, _ = staff_member(app, site, conn)
    for raw in ("%ED%A0%80abc", "%FF%FEabc", "abc%C0%AF"):
        answer = support.get(f"/v1/admin/users/{anna['id']}?reason={raw}")
        assert answer.status_code in (200, 400, 422), (raw, answer.get_data(as_text=True))
    for row in trail(conn, event="staff.read"):
        row["reason"].encode("utf-8")  # no lone surrogate


def test_a_repeated_reason_is_not_two_reasons(app, site, conn, anna):
    support, _, _ = staff_member(app, site, conn)
    answer = support.get(f"/v1/admin/users/{anna['id']}?reason=first+reason&reason=second+one")
    if answer.status_code == 200:
        (row,) = trail(conn, event="staff.read")
        assert row["reason"] in ("first reason", "second one")
    else:
        assert_problem(answer, 422)


@pytest.mark.parametrize("q", ["\\", "_", "%", "a%", "a_n", "\\%", "'", '"', "anna)|("])
def test_search_wildcards_are_plain_characters(app, site, conn, anna, q):
    support, _, _ = staff_member(app, site, conn)
    answer = support.get("/v1/admin/users", query_string={"q": q, "reason": WHY})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.get_json() == []


def test_search_refuses_nul_and_control_characters(app, site, conn, anna):
    support, _, _ = staff_member(app, site, conn)
    for q in ("an\x00na", "an\x1bna", ""):
        answer = support.get("/v1/admin/users", query_string={"q": q, "reason": WHY})
        assert_problem(answer, 422, "q")


def test_search_finds_accented_and_non_ascii_names_in_any_case(app, site, conn):
    emile = sign_up(site, conn, email="e@example.com", first_name="Émile", last_name="Ødegård")
    support, _, _ = staff_member(app, site, conn)
    for q in ("émile", "ÉMILE", "Émi", "ødeg", "ØDEGÅRD"):
        found = support.get("/v1/admin/users", query_string={"q": q, "reason": WHY}).get_json()
        assert [r["id"] for r in found] == [emile["id"]], q


# Mended (hostile round 24b).
def test_search_finds_an_address_with_sharp_s_as_typed(app, site, conn):
    person = sign_up(site, conn, email="straße@example.com")
    support, _, _ = staff_member(app, site, conn)
    found = support.get("/v1/admin/users", query_string={"q": "straße", "reason": WHY})
    assert [r["id"] for r in found.get_json()] == [person["id"]]


def test_search_turkish_dotted_i_and_final_sigma_do_not_break(app, site, conn):
    sign_up(site, conn, email="i@example.com", first_name="İlker", last_name="Σοφίας")
    support, _, _ = staff_member(app, site, conn)
    for q in ("İ", "i̇l", "ΣΟΦΊΑΣ", "σοφίας", "σοφίας"):
        answer = support.get("/v1/admin/users", query_string={"q": q, "reason": WHY})
        assert answer.status_code == 200, (q, answer.get_data(as_text=True))


# Mended (hostile round 24b).
def test_a_foreign_search_cursor_is_a_422(app, site, conn, anna):
    support, _, _ = staff_member(app, site, conn)
    for after in ("00000000-0000-4000-8000-000000000000",):
        answer = support.get(
            "/v1/admin/users", query_string={"q": "anna", "reason": WHY, "after": after}
        )
        assert_problem(answer, 422, "after")


def test_the_search_next_link_keeps_q_and_reason_as_sent(app, site, conn):
    for n in range(3):
        sign_up(site, conn, email=f"a&b{n}@example.com")
    support, _, _ = staff_member(app, site, conn)
    why = "ticket #12 & more: 50% / done?"
    first = support.get("/v1/admin/users", query_string={"q": "a&b", "reason": why, "limit": 2})
    assert len(first.get_json()) == 2
    following = first.headers["Link"].split(";")[0].strip("<>")
    second = support.get(following)
    assert [r["email"] for r in second.get_json()] == ["a&b2@example.com"]
    assert {r["reason"] for r in trail(conn, event="staff.found")} == {why}


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"since": "2026-01-01T00:00:00"},  # no offset
        {"until": "2026-13-01T00:00:00Z"},
        {"after": "0"},
        {"after": "-1"},
        {"after": str(2**63)},
        {"after": "1e3"},
        {"after": "99999999999999999999999999"},
        {"limit": "0"},
        {"limit": "101"},
        {"user_id": "not-a-uuid"},
        {"actor_id": "00000000-0000-0000-0000-00000000000g"},
        {"since": "0000-01-01T00:00:00Z"},
        {"until": "10000-01-01T00:00:00Z"},
        {"bogus": "1"},
    ],
)
def test_bad_trail_filters_are_a_422(app, site, conn, params):
    dpo, _, _ = staff_member(app, site, conn, role="dpo")
    answer = dpo.get("/v1/admin/audit", query_string={"reason": WHY, **params})
    assert_problem(answer, 422)


@pytest.mark.parametrize(
    "params",
    [
        {"since": "2030-01-01T00:00:00Z", "until": "2020-01-01T00:00:00Z"},
        {"since": "0001-01-01T00:00:00+14:00"},
        {"until": "9999-12-31T23:59:59-12:00"},
        {"after": str(2**63 - 1)},
        {"user_id": "00000000-0000-4000-8000-000000000000"},
    ],
)
def test_odd_but_valid_trail_filters_answer_without_error(app, site, conn, params):
    dpo, _, _ = staff_member(app, site, conn, role="dpo")
    answer = dpo.get("/v1/admin/audit", query_string={"reason": WHY, **params})
    assert answer.status_code in (200, 422), answer.get_data(as_text=True)


# --- the trail itself --------------------------------------------------------------------


# Mended (hostile round 24b).
def test_a_trail_row_cannot_be_deleted_by_hand(conn, anna, owner_db):
    conn.execute(
        "insert into audit_events (event, actor, subject_id) values ('x', 'operator', %s)",
        (anna["id"],),
    )
    # The serving role has no right to; its owner is refused by the trigger.
    with pytest.raises(Exception, match="permission denied"), conn.transaction():
        conn.execute("delete from audit_events where event = 'x'")
    with pytest.raises(Exception, match="append-only"), owner_db.transaction():
        owner_db.execute(
            "insert into audit_events (event, actor) values ('y', 'operator') returning id"
        )
        owner_db.execute("delete from audit_events where event = 'y'")


def test_the_trail_and_its_details_hold_no_address_password_or_token(app, site, conn, anna):
    me = as_user(app, login(site).get_json()["access_token"])
    login(site, password="a wrong guess of a password")
    me.post(
        "/v1/me/email", json={"current_password": "wrong wrong wrong", "new_email": "n@x.example"}
    )
    support, _, _ = staff_member(app, site, conn)
    support.get("/v1/admin/users", query_string={"q": "anna@exa", "reason": WHY})
    as_anna = _impersonate(app, support, anna["id"])
    as_anna.get("/v1/me")
    as_anna.put("/v1/me/password", json={"current_password": PASSWORD, "new_password": "x" * 20})
    text = " ".join(
        str(row)
        for row in conn.execute("select event, details, site, key_prefix from audit_events")
    )
    for secret in ("anna@example.com", "n@x.example", PASSWORD, "a wrong guess", "x" * 20):
        assert secret not in text


# --- erasure -----------------------------------------------------------------------------


# Mended (hostile round 24b).
def test_erasure_removes_mail_to_a_pending_new_address(app, site, conn, anna):
    me = as_user(app, login(site).get_json()["access_token"])
    change = {"current_password": PASSWORD, "new_email": "anna.new@example.org", **BROWSER}
    assert me.post("/v1/me/email", json=change).status_code in (200, 202, 204)
    assert traces(conn, "anna.new@example.org")  # there is something to find
    erased = me.delete("/v1/me", json={"current_password": PASSWORD, **BROWSER})
    assert erased.status_code == 204
    assert traces(conn, anna["id"], "anna@example.com", "anna.new@example.org") == {}


def test_erasure_with_a_wrong_code_or_password_changes_nothing(app, site, conn, anna):
    me = as_user(app, login(site).get_json()["access_token"])
    app_ = set_up(me)
    recovery = turn_on(me, app_)
    for body in (
        {"current_password": PASSWORD, "code": "000000"},
        {"current_password": PASSWORD},
        {"current_password": PASSWORD, "recovery_code": "not-a-code"},
        {"current_password": "wrong password entirely", "code": next_code(app_, conn)},
    ):
        answer = me.delete("/v1/me", json={**body, **BROWSER})
        assert answer.status_code in (403, 422, 429), answer.get_data(as_text=True)
        assert conn.execute("select 1 from users where id = %s", (anna["id"],)).fetchone()
    # A recovery code is proof enough for the person's own erasure.
    fine = {"current_password": PASSWORD, "recovery_code": recovery[0], **BROWSER}
    assert me.delete("/v1/me", json=fine).status_code == 204


def test_an_empty_password_with_a_stale_sign_in_erases_nothing(app, site, conn, anna):
    me = as_user(app, login(site).get_json()["access_token"])
    conn.execute("update sessions set created_at = now() - interval '6 minutes'")
    for body in ({"current_password": ""}, {"current_password": None}, {}):
        assert_problem(me.delete("/v1/me", json={**body, **BROWSER}), 403)
    assert conn.execute("select 1 from users where id = %s", (anna["id"],)).fetchone()


def test_an_erased_persons_staff_traces_of_impersonation_go_too(app, site, conn, anna):
    support, _, _ = staff_member(app, site, conn)
    as_anna = _impersonate(app, support, anna["id"])
    as_anna.patch("/v1/me", json={"first_name": "Anne"})
    dpo, _, _ = staff_member(app, site, conn, role="dpo", email="dpo@copernica.example")
    answer = dpo.delete(f"/v1/admin/users/{anna['id']}", query_string={"reason": WHY})
    assert answer.status_code == 204
    assert traces(conn, anna["id"], "anna@example.com") == {}
    assert_problem(as_anna.get("/v1/me"), 401)


# --- erasure under parallel requests (committing) ----------------------------------------


@pytest.fixture
def live(pooled_app, committing_db):
    import requests

    from tests.api.liveserver import serving
    from tests.sites import EVERY_LIST, site_key_for

    key = site_key_for(committing_db, "copernica.com", lists=EVERY_LIST)
    with serving(pooled_app) as base_url:
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        yield base_url, session


def _live_sign_up(base_url, session, db, email) -> tuple[str, str]:
    """(their id, an access token of theirs); each from a client address of their own."""
    ip = f"198.51.100.{sum(email.encode()) % 250 + 1}"
    body = {"email": email, "password": PASSWORD, **BROWSER, "client_ip": ip}
    assert session.post(f"{base_url}/v1/auth/register", json=body).status_code == 202
    token = db.execute(
        "select mail_values from outbox where recipient = %s and template = 'verify_email'"
        " order by id desc limit 1",
        (email,),
    ).fetchone()["mail_values"]["token"]
    proven = session.post(f"{base_url}/v1/auth/verify-email", json={"token": token})
    assert proven.ok, proven.text
    signed_in = session.post(f"{base_url}/v1/auth/login", json=body)
    assert signed_in.ok, signed_in.text
    return proven.json()["id"], signed_in.json()["access_token"]


def _parallel(calls):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.mark.committing
# Mended (hostile round 24b).
def test_two_admins_erasing_themselves_at_once_never_leave_a_company_without_admin(
    live, committing_db, database_url
):
    import threading
    import time

    import psycopg
    import requests

    base_url, session = live
    _, a_token = _live_sign_up(base_url, session, committing_db, "a@example.com")
    b_id, b_token = _live_sign_up(base_url, session, committing_db, "b@example.com")
    company = requests.post(
        f"{base_url}/v1/companies",
        json={"name": "Race B.V."},
        headers={"Authorization": f"Bearer {a_token}"},
        timeout=30,
    ).json()["id"]
    committing_db.execute(
        "insert into company_members (company_id, user_id, role) values (%s, %s, 'admin')",
        (company, b_id),
    )
    # B edits a field: the company's field_sources name both, so each erasure touches it.
    edited = requests.patch(
        f"{base_url}/v1/companies/{company}",
        json={"city": "Utrecht"},
        headers={"Authorization": f"Bearer {b_token}"},
        timeout=30,
    )
    assert edited.ok, edited.text
    results = {}

    def erase(name, token, ip):
        results[name] = requests.delete(
            f"{base_url}/v1/me",
            json={"current_password": PASSWORD, "client_ip": ip},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ).status_code

    # Someone else holds the company row a moment (a PATCH of it, a slow disk): both
    # erasures have made their check by the time it is free again.
    with psycopg.connect(database_url) as busy:
        busy.execute("select 1 from companies where id = %s for update", (company,))
        threads = [
            threading.Thread(target=erase, args=("a", a_token, "192.0.2.1")),
            threading.Thread(target=erase, args=("b", b_token, "192.0.2.2")),
        ]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            waiting = committing_db.execute(
                "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                " and datname = current_database()"
            ).fetchone()["count"]
            if waiting >= 2 or not any(t.is_alive() for t in threads):
                break
            time.sleep(0.05)
        busy.commit()
    for thread in threads:
        thread.join()
    admins = committing_db.execute(
        "select count(*) from company_members where company_id = %s and role = 'admin'",
        (company,),
    ).fetchone()["count"]
    assert sorted(results.values()) == [204, 409] and admins == 1, (results, admins)


@pytest.mark.committing
def test_twenty_parallel_erasures_of_one_person_erase_once(live, committing_db, pooled_app):
    import pyotp
    import requests

    base_url, session = live
    anna_id, _ = _live_sign_up(base_url, session, committing_db, "anna@example.com")
    dpo_id, dpo_token = _live_sign_up(base_url, session, committing_db, "dpo@copernica.example")
    me = {"Authorization": f"Bearer {dpo_token}"}
    setup = requests.post(
        f"{base_url}/v1/me/second-factor/totp",
        json={"current_password": PASSWORD, **BROWSER},
        headers=me,
        timeout=30,
    )
    app_ = pyotp.TOTP(setup.json()["secret"])
    requests.post(
        f"{base_url}/v1/me/second-factor/totp/confirm",
        json={"code": app_.now()},
        headers=me,
        timeout=30,
    ).raise_for_status()
    committing_db.execute("insert into staff_roles (user_id, role) values (%s, 'dpo')", (dpo_id,))
    committing_db.execute("update second_factors set last_step = null")
    signed_in = session.post(
        f"{base_url}/v1/auth/login",
        json={
            "email": "dpo@copernica.example",
            "password": PASSWORD,
            "code": app_.now(),
            **BROWSER,
        },
    )
    assert signed_in.ok, signed_in.text
    staff = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}

    def erase():
        return requests.delete(
            f"{base_url}/v1/admin/users/{anna_id}",
            params={"reason": WHY},
            headers=staff,
            timeout=60,
        ).status_code

    statuses = _parallel([erase] * 20)
    assert sorted(statuses) == [204] + [404] * 19, statuses
    assert committing_db.execute("select count(*) from erasures").fetchone()["count"] == 1
    assert (
        committing_db.execute(
            "select count(*) from audit_events where event = 'staff.erased'"
        ).fetchone()["count"]
        == 1
    )
    assert traces(committing_db, anna_id, "anna@example.com") == {}


@pytest.mark.committing
def test_subscriptions_racing_an_erasure_never_subscribe_without_confirmation(live, committing_db):
    import requests

    base_url, session = live
    anna_id, token = _live_sign_up(base_url, session, committing_db, "anna@example.com")
    consent = {"text": "Updates, please", **BROWSER}

    def subscribe():
        return session.post(
            f"{base_url}/v1/newsletters/copernica-updates/subscriptions",
            json={"email": "anna@example.com", "consent": consent},
            timeout=60,
        ).status_code

    def erase():
        return requests.delete(
            f"{base_url}/v1/me",
            json={"current_password": PASSWORD, **BROWSER},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        ).status_code

    statuses = _parallel([subscribe] * 6 + [erase] + [subscribe] * 6)
    assert 500 not in statuses and statuses[6] == 204, statuses
    # What the later subscriptions made is a new record of the address: pending (a
    # confirmation asked), never subscribed without one.
    states = committing_db.execute(
        "select s.state from subscriptions s join users u on u.id = s.user_id"
        " where u.email = 'anna@example.com'"
    ).fetchall()
    assert {row["state"] for row in states} <= {"pending"}, states
    assert traces(committing_db, anna_id) == {}


# --- more of suppression, provenance and logs -----------------------------------------------


# Mended (hostile round 24b).
def test_a_change_made_by_impersonation_is_not_marked_as_the_persons(app, site, conn, anna):
    support, _, _ = staff_member(app, site, conn)
    as_anna = _impersonate(app, support, anna["id"])
    changed = as_anna.patch("/v1/me", json={"first_name": "Anne"})
    assert changed.status_code == 200
    assert changed.get_json()["field_sources"]["first_name"]["source"] != "person"


def test_no_log_line_holds_the_search_term_the_reason_or_a_token(app, site, conn, anna, caplog):
    import logging

    caplog.set_level(logging.DEBUG)
    support, _, _ = staff_member(app, site, conn)
    why = "ticket 98765: confidential complaint about Anna"
    support.get("/v1/admin/users", query_string={"q": "anna@exa", "reason": why})
    given = support.post(f"/v1/admin/users/{anna['id']}/impersonate", query_string={"reason": why})
    token = given.get_json()["access_token"]
    as_user(app, token).get("/v1/me")
    dpo, _, _ = staff_member(app, site, conn, role="dpo", email="dpo@copernica.example")
    dpo.delete(f"/v1/admin/users/{anna['id']}", query_string={"reason": why})
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for secret in ("anna@exa", "98765", token, PASSWORD):
        assert secret not in text


@pytest.mark.committing
def test_prune_runs_alongside_logins_refreshes_and_erasures(live, committing_db, database_url):
    """`identity prune` (every retention at its least, 1 day, with rows made old) while people
    sign in, refresh and erase themselves: no request fails, and prune finishes."""
    import subprocess
    import sys

    import requests

    from tests.served import gunicorn_env

    base_url, session = live
    for n in range(4):
        _live_sign_up(base_url, session, committing_db, f"p{n}@example.com")
    committing_db.execute("update login_attempts set at = now() - interval '2 days'")
    committing_db.execute(
        "update sessions set expires_at = now() - interval '2 days',"
        " created_at = now() - interval '3 days'"
    )
    env = gunicorn_env(database_url)
    env |= {
        f"IDENTITY_RETENTION_{k}_DAYS": "1"
        for k in ("LOGIN_ATTEMPTS", "SIGN_INS", "MAILED_LINKS", "AUDIT_EVENTS", "MAIL")
    }

    def prune():
        done = subprocess.run(
            [sys.executable, "-m", "identity", "prune"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return done.returncode, done.stderr[-500:]

    def churn(n):
        def run():
            email = f"p{n}@example.com"
            ip = f"198.51.100.{sum(email.encode()) % 250 + 1}"
            codes = []
            for _ in range(5):
                tokens = session.post(
                    f"{base_url}/v1/auth/login",
                    json={"email": email, "password": PASSWORD, "client_ip": ip},
                )
                codes.append(tokens.status_code)
                if tokens.ok:
                    codes.append(
                        session.post(
                            f"{base_url}/v1/auth/refresh",
                            json={"refresh_token": tokens.json()["refresh_token"]},
                        ).status_code
                    )
            codes.append(
                requests.delete(
                    f"{base_url}/v1/me",
                    json={"current_password": PASSWORD, "client_ip": ip},
                    headers={"Authorization": f"Bearer {tokens.json()['access_token']}"},
                    timeout=60,
                ).status_code
            )
            return codes

        return run

    results = _parallel([prune, prune] + [churn(n) for n in range(4)])
    for code, err in results[:2]:
        assert code == 0, err
    for codes in results[2:]:
        assert all(c < 500 for c in codes), codes
        assert codes[-1] == 204, codes
