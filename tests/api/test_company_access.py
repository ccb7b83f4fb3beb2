"""Who may do what with a company, as one table: for every company endpoint, every kind of
caller gets exactly the answer the rules say (identity.services.companies.RIGHTS). A rule
change shows here, in one row.

The callers: a stranger (an account with nothing to do with the company), a member, an
admin, a member of the partner company the customer chose, a staff member (support,
signed in with a second factor: they read, and keep the internal description), and a site
key (which has no business with a person's companies). Each cell runs on the same
starting point, rolled back after it."""

import io

from PIL import Image

from tests.api.test_accounts import as_user, login, sign_up
from tests.api.test_staff import staff_member
from tests.outbox import mailed

CALLERS = ("stranger", "member", "admin", "partner", "staff", "site")

# (what, method, path, body) → the status for each caller, in CALLERS order. In paths,
# {c} is the customer company, {p} its partner, {m2} a second member, {me} the caller's own
# id, {i} an open invitation.
MATRIX = [
    ("read the company", "GET", "/v1/companies/{c}", None, (404, 200, 200, 200, 200, 401)),
    (
        "change it",
        "PATCH",
        "/v1/companies/{c}",
        {"city": "Utrecht"},
        (404, 403, 200, 403, 403, 401),
    ),
    ("read its people", "GET", "/v1/companies/{c}/members", None, (404, 200, 200, 200, 200, 401)),
    (
        "change a role",
        "PATCH",
        "/v1/companies/{c}/members/{m2}",
        {"role": "admin"},
        (404, 403, 200, 403, 403, 401),
    ),
    (
        "remove a member",
        "DELETE",
        "/v1/companies/{c}/members/{m2}",
        None,
        (404, 403, 204, 403, 403, 401),
    ),
    # Leaving: a member may; the last admin may not; the partner's people are no members.
    ("leave", "DELETE", "/v1/companies/{c}/members/{me}", None, (404, 204, 409, 403, 403, 401)),
    (
        "invite",
        "POST",
        "/v1/companies/{c}/invitations",
        {"email": "new@acme.example"},
        (404, 403, 201, 403, 403, 401),
    ),
    (
        "see invitations",
        "GET",
        "/v1/companies/{c}/invitations",
        None,
        (404, 403, 200, 403, 403, 401),
    ),
    (
        "withdraw one",
        "DELETE",
        "/v1/companies/{c}/invitations/{i}",
        None,
        (404, 403, 204, 403, 403, 401),
    ),
    (
        "choose a partner",
        "PUT",
        "/v1/companies/{c}/partner",
        {"partner_id": "{p}"},
        (404, 403, 200, 403, 403, 401),
    ),
    (
        "drop the partner",
        "DELETE",
        "/v1/companies/{c}/partner",
        None,
        (404, 403, 204, 403, 403, 401),
    ),
    ("see the logo", "GET", "/v1/companies/{c}/logo", None, (404, 200, 200, 200, 200, 401)),
    ("put up a logo", "PUT", "/v1/companies/{c}/logo", "png", (404, 403, 200, 403, 403, 401)),
    ("take it down", "DELETE", "/v1/companies/{c}/logo", None, (404, 403, 204, 403, 403, 401)),
    # Only the partner's own people see its customers.
    (
        "see the customers",
        "GET",
        "/v1/companies/{p}/customers",
        None,
        (404, 404, 404, 200, 200, 401),
    ),
    (
        "make a company",
        "POST",
        "/v1/companies",
        {"name": "New B.V."},
        (201, 201, 201, 201, 201, 401),
    ),
    (
        "keep the internal description",
        "PATCH",
        "/v1/companies/{c}",
        {"internal_description": "Key account."},
        (404, 403, 403, 403, 200, 401),
    ),
]


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "green").save(out, "PNG")
    return out.getvalue()


def _person(app, site, conn, email):
    record = sign_up(site, conn, email=email)
    return as_user(app, login(site, email=email).get_json()["access_token"]), record["id"]


def test_every_caller_gets_what_the_rules_say(app, site, conn):
    people = {name: _person(app, site, conn, f"{name}@acme.example") for name in CALLERS[:4]}
    staff, _, _ = staff_member(app, site, conn)
    m2, m2_id = _person(app, site, conn, "second@acme.example")
    admin = people["admin"][0]
    customer = admin.post("/v1/companies", json={"name": "Customer B.V."}).get_json()["id"]
    partner_admin = people["partner"][0]
    partner = partner_admin.post("/v1/companies", json={"name": "Partner B.V."}).get_json()["id"]
    conn.execute("update companies set is_partner = true where id = %s", (partner,))
    for who, client in (("member", people["member"][0]), ("second", m2)):
        email = f"{who}@acme.example"
        admin.post(f"/v1/companies/{customer}/invitations", json={"email": email})
        token = mailed(conn, email, "company_invitation")["token"]
        assert client.post("/v1/me/invitations/accept", json={"token": token}).status_code == 200
    chosen = admin.put(f"/v1/companies/{customer}/partner", json={"partner_id": partner})
    assert chosen.status_code == 200
    invitation = admin.post(
        f"/v1/companies/{customer}/invitations", json={"email": "open@acme.example"}
    ).get_json()["id"]
    png = _png()
    put = admin.put(f"/v1/companies/{customer}/logo", data=png, content_type="image/png")
    assert put.status_code == 200, put.get_data(as_text=True)

    callers = {name: client for name, (client, _) in people.items()}
    callers |= {"staff": staff, "site": site}
    ids = {name: user_id for name, (_, user_id) in people.items()}
    ids |= {"staff": ids["stranger"], "site": m2_id}
    wrong = []
    for what, method, path, body, expected in MATRIX:
        for caller, status in zip(CALLERS, expected, strict=True):
            values = {"c": customer, "p": partner, "m2": m2_id, "me": ids[caller], "i": invitation}
            url = path.format(**values)
            kwargs = {}
            if body == "png":
                kwargs = {"data": png, "content_type": "image/png"}
            elif body is not None:
                kwargs = {"json": {k: v.format(**values) for k, v in body.items()}}
            with conn.transaction(force_rollback=True):
                answer = callers[caller].open(url, method=method, **kwargs)
            if answer.status_code != status:
                wrong.append(f"{what}: {caller} got {answer.status_code}, the rules say {status}")
    assert wrong == []
