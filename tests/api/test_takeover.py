"""Issue 21, item 5, first finding: a stolen 15-minute access token became a permanent
takeover (a change of address to the thief's mailbox, confirmed, then a password reset to
it), and the owner's mailbox only ever heard "is being changed". Played here through the
HTTP API, the mails delivered over SMTP to a real server and read as the owner and the
thief would read them."""

import pyotp
import pytest
from PIL import Image

from tests.api import test_mail_as_the_site as mail_as_the_site
from tests.api.problems import assert_problem
from tests.api.test_accounts import BROWSER, PASSWORD
from tests.api.test_mail_as_the_site import COPERNICA, one_mail, sign_up
from tests.test_images import encoded

# That module's fixtures: its sites (one of them copernica.com, branded) and the courier
# that delivers what is due to the test's SMTP server.
sites = mail_as_the_site.sites
deliver = mail_as_the_site.deliver

THIEF = {"client_ip": "198.51.100.66", "user_agent": "curl/8"}
THIEF_PASSWORD = "thief keeps this one 90210 kazoo"
NEW_PASSWORD = "violet harbour sings 4711 oboes"


@pytest.fixture
def copernica(sites):
    return sites["copernica.com"]


def _login(site, password=PASSWORD, **browser):
    body = {"email": "anna@example.com", "password": password, **(browser or BROWSER)}
    return site.post("/v1/auth/login", json=body)


def _as(app, access_token):
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {access_token}"
    return client


def test_a_stolen_access_token_alone_cannot_move_the_account(app, copernica, deliver):
    sign_up(copernica, deliver, COPERNICA)
    stolen = _as(app, _login(copernica).get_json()["access_token"])
    asked = stolen.post("/v1/me/email", json={"new_email": "thief@evil.example", **THIEF})
    assert_problem(asked, 422, "current_password")
    guessed = {"new_email": "thief@evil.example", "current_password": "a guess", **THIEF}
    assert_problem(stolen.post("/v1/me/email", json=guessed), 422, "current_password")
    assert deliver() == {}  # nothing mailed to anyone


def test_a_thief_who_knows_the_password_too_is_undone_from_the_owners_mailbox(
    app, conn, copernica, deliver
):
    sign_up(copernica, deliver, COPERNICA)
    owner = _as(app, _login(copernica).get_json()["access_token"])
    stolen = _as(app, _login(copernica, **THIEF).get_json()["access_token"])
    body = {"new_email": "thief@evil.example", "current_password": PASSWORD, **THIEF}
    assert stolen.post("/v1/me/email", json=body).status_code == 202
    delivered = deliver()
    asked_notice = one_mail(delivered, "anna@example.com", COPERNICA)
    first_undo = asked_notice.token(COPERNICA, "/email-change-undo")
    confirm = one_mail(delivered, "thief@evil.example", COPERNICA).token(COPERNICA, "/email-change")
    # The thief confirms from their mailbox, and resets the password to it.
    moved = copernica.post("/v1/auth/verify-email", json={"token": confirm})
    assert moved.get_json()["email"] == "thief@evil.example"
    done_notice = one_mail(deliver(), "anna@example.com", COPERNICA)
    assert "no longer uses this email address" in done_notice.text
    done_undo = done_notice.token(COPERNICA, "/email-change-undo")
    assert done_undo != first_undo
    reset = {"email": "thief@evil.example", **THIEF}
    assert copernica.post("/v1/auth/password-reset", json=reset).status_code == 202
    reset_token = one_mail(deliver(), "thief@evil.example", COPERNICA).token(
        COPERNICA, "/reset-password"
    )
    new = {"token": reset_token, "new_password": THIEF_PASSWORD, **THIEF}
    assert copernica.post("/v1/auth/password-reset/confirm", json=new).status_code == 204
    deliver()  # the notice of the new password, to the thief's address
    thief_login = copernica.post(
        "/v1/auth/login",
        json={"email": "thief@evil.example", "password": THIEF_PASSWORD, **THIEF},
    ).get_json()
    thief = _as(app, thief_login["access_token"])
    assert thief.get("/v1/me").status_code == 200
    assert_problem(owner.get("/v1/me"), 401)  # the reset threw the owner out

    # The owner's old mailbox still has the links: the first undoes it as well as the second.
    undone = copernica.post("/v1/auth/email-change/undo", json={"token": first_undo, **BROWSER})
    assert undone.status_code == 200, undone.get_data(as_text=True)
    assert undone.get_json()["email"] == "anna@example.com"
    # Every sign-in of the thief has ended, access and refresh tokens alike...
    assert_problem(thief.get("/v1/me"), 401)
    refresh = {"refresh_token": thief_login["refresh_token"]}
    assert_problem(copernica.post("/v1/auth/refresh", json=refresh), 401)
    # ...and the password the thief chose with it; nor does the thief's address sign in.
    assert_problem(_login(copernica, THIEF_PASSWORD, **THIEF), 401)
    thief_address = {"email": "thief@evil.example", "password": THIEF_PASSWORD, **THIEF}
    assert_problem(copernica.post("/v1/auth/login", json=thief_address), 401)
    # The other link is spent with it.
    assert_problem(copernica.post("/v1/auth/email-change/undo", json={"token": done_undo}), 422)
    # The owner chooses a new password from the old mailbox, and signs in.
    choose = one_mail(deliver(), "anna@example.com", COPERNICA).token(COPERNICA, "/reset-password")
    chosen = {"token": choose, "new_password": NEW_PASSWORD, **BROWSER}
    assert copernica.post("/v1/auth/password-reset/confirm", json=chosen).status_code == 204
    assert _login(copernica, NEW_PASSWORD).status_code == 200
    assert conn.execute("select email from users").fetchone()["email"] == "anna@example.com"


def test_undoing_a_pending_change_voids_its_confirmation(app, conn, copernica, deliver):
    sign_up(copernica, deliver, COPERNICA)
    me = _as(app, _login(copernica).get_json()["access_token"])
    body = {"new_email": "anna@work.example", "current_password": PASSWORD, **BROWSER}
    assert me.post("/v1/me/email", json=body).status_code == 202
    delivered = deliver()
    undo = one_mail(delivered, "anna@example.com", COPERNICA).token(COPERNICA, "/email-change-undo")
    confirm = one_mail(delivered, "anna@work.example", COPERNICA).token(COPERNICA, "/email-change")
    assert copernica.post("/v1/auth/email-change/undo", json={"token": undo}).status_code == 200
    assert_problem(copernica.post("/v1/auth/verify-email", json={"token": confirm}), 422)
    assert_problem(me.get("/v1/me"), 401)
    assert_problem(copernica.post("/v1/auth/email-change/undo", json={"token": undo}), 422)


def _moved_to_work(app, copernica, deliver):
    """Anna moves her account to anna@work.example; her signed-in client and the undo link
    the notice of the done change brings to anna@example.com."""
    sign_up(copernica, deliver, COPERNICA, first_name="Anna")
    me = _as(app, _login(copernica).get_json()["access_token"])
    body = {"new_email": "anna@work.example", "current_password": PASSWORD, **BROWSER}
    me.post("/v1/me/email", json=body)
    confirm = one_mail(deliver(), "anna@work.example", COPERNICA).token(COPERNICA, "/email-change")
    assert copernica.post("/v1/auth/verify-email", json={"token": confirm}).status_code == 200
    undo = one_mail(deliver(), "anna@example.com", COPERNICA).token(COPERNICA, "/email-change-undo")
    return me, undo


def test_an_undo_is_refused_when_another_account_holds_the_old_address_by_now(
    app, conn, copernica, deliver
):
    me, undo = _moved_to_work(app, copernica, deliver)
    # The freed address becomes an account of its own: only someone reading its mail can
    # have proven it, so the owner chose this, and nothing is joined or taken from it.
    sign_up(copernica, deliver, COPERNICA)
    refused = copernica.post("/v1/auth/email-change/undo", json={"token": undo})
    assert_problem(refused, 409)
    # Nothing changed: the account, its sign-in and its password are as they were...
    assert me.get("/v1/me").get_json()["email"] == "anna@work.example"
    login = {"email": "anna@work.example", "password": PASSWORD, **BROWSER}
    assert copernica.post("/v1/auth/login", json=login).status_code == 200
    assert conn.execute("select count(*) from users").fetchone()["count"] == 2
    # ...and the link is still good once the address is free again.
    conn.execute("delete from users where email = 'anna@example.com'")
    assert copernica.post("/v1/auth/email-change/undo", json={"token": undo}).status_code == 200


def test_an_undo_joins_a_profile_made_for_the_old_address_meanwhile(app, conn, copernica, deliver):
    me, undo = _moved_to_work(app, copernica, deliver)
    account = me.get("/v1/me").get_json()
    # Anyone may post an address: a webinar form and a newsletter sign-up make a profile
    # for the freed one (a thief could do it to keep the owner from coming back).
    profile = {
        "email": "anna@example.com",
        "source": "webinar",
        "first_name": "Annie",
        "phone": "+31201234567",
    }
    assert copernica.post("/v1/profiles", json=profile).status_code == 201
    consent = {"text": "Yes, mail me", **THIEF}
    signed = copernica.post(
        "/v1/newsletters/copernica/subscriptions",
        json={"email": "anna@example.com", "consent": consent},
    )
    assert signed.status_code in (200, 201, 202), signed.get_data(as_text=True)
    confirmation = one_mail(deliver(), "anna@example.com", COPERNICA).token(
        COPERNICA, "/newsletters/confirm"
    )
    undone = copernica.post("/v1/auth/email-change/undo", json={"token": undo})
    assert undone.status_code == 200, undone.get_data(as_text=True)
    back = undone.get_json()
    assert (back["id"], back["email"]) == (account["id"], "anna@example.com")
    # One record: the account, its own first name kept, the profile's phone filling a
    # blank; the sign-up's consent and its pending flag came with it.
    rows = conn.execute("select id, first_name, phone from users").fetchall()
    assert [(str(r["id"]), r["phone"]) for r in rows] == [(account["id"], "+31201234567")]
    assert rows[0]["first_name"] == account["first_name"] == "Anna"
    events = conn.execute(
        "select action, host(client_ip) as client_ip from consent_events where user_id = %s",
        (rows[0]["id"],),
    ).fetchall()
    assert [(e["action"], e["client_ip"]) for e in events] == [("request", THIEF["client_ip"])]
    # The confirmation mailed to the address still works, for the account now.
    confirmed = copernica.post("/v1/newsletters/confirm", json={"token": confirmation})
    assert confirmed.status_code == 200, confirmed.get_data(as_text=True)
    flags = conn.execute("select user_id, state from subscriptions").fetchall()
    assert [(str(f["user_id"]), f["state"]) for f in flags] == [(account["id"], "subscribed")]


def _turn_on_second_factor(person) -> pyotp.TOTP:
    body = {"current_password": PASSWORD, **BROWSER}
    app_ = pyotp.TOTP(person.post("/v1/me/second-factor/totp", json=body).get_json()["secret"])
    confirmed = person.post("/v1/me/second-factor/totp/confirm", json={"code": app_.now()})
    assert confirmed.status_code == 200
    return app_


def test_an_undo_keeps_the_owners_second_factor_and_drops_one_turned_on_since(
    app, conn, copernica, deliver
):
    sign_up(copernica, deliver, COPERNICA)
    sign_up(copernica, deliver, COPERNICA, email="bob@example.com")
    people = {}
    for email in ("anna@example.com", "bob@example.com"):
        answer = copernica.post(
            "/v1/auth/login", json={"email": email, "password": PASSWORD, **BROWSER}
        )
        people[email] = _as(app, answer.get_json()["access_token"])
    # Anna's factor was hers before the sign-in that asks (turned on 8 days before it,
    # longer than the undo's window);
    # Bob's thief turns one on after asking.
    anna_app = _turn_on_second_factor(people["anna@example.com"])
    deliver()  # the notice that a second factor was turned on
    conn.execute(
        "update second_factors"
        " set last_step = null, confirmed_at = confirmed_at - interval '8 days'"
    )
    asks = {
        "anna@example.com": {"code": anna_app.now()},
        "bob@example.com": {},
    }
    for email, code in asks.items():
        new = email.replace("@", "+moved@")
        body = {"new_email": new, "current_password": PASSWORD, **BROWSER, **code}
        assert people[email].post("/v1/me/email", json=body).status_code == 202
    delivered = deliver()
    _turn_on_second_factor(people["bob@example.com"])
    deliver()  # the notice that a second factor was turned on
    for email in asks:
        undo = one_mail(delivered, email, COPERNICA).token(COPERNICA, "/email-change-undo")
        undone = copernica.post("/v1/auth/email-change/undo", json={"token": undo})
        assert undone.status_code == 200, undone.get_data(as_text=True)
    factors = conn.execute(
        "select u.email from second_factors f join users u on u.id = f.user_id"
    ).fetchall()
    assert [row["email"] for row in factors] == ["anna@example.com"]


def test_an_undo_drops_a_second_factor_turned_on_in_the_sign_in_that_asked(
    app, conn, copernica, deliver
):
    """Turned on in the very sign-in that asks for the change (a thief who signed in with
    the password adds one first): not the owner's, so the undo takes it away."""
    sign_up(copernica, deliver, COPERNICA)
    answer = copernica.post(
        "/v1/auth/login", json={"email": "anna@example.com", "password": PASSWORD, **BROWSER}
    )
    person = _as(app, answer.get_json()["access_token"])
    app_codes = _turn_on_second_factor(person)
    assert "anna@example.com" in deliver()  # the notice that a second factor was turned on
    conn.execute("update second_factors set last_step = null")
    body = {
        "new_email": "thief@example.com",
        "current_password": PASSWORD,
        "code": app_codes.now(),
        **BROWSER,
    }
    assert person.post("/v1/me/email", json=body).status_code == 202
    undo = one_mail(deliver(), "anna@example.com", COPERNICA).token(COPERNICA, "/email-change-undo")
    assert copernica.post("/v1/auth/email-change/undo", json={"token": undo}).status_code == 200
    assert conn.execute("select count(*) as n from second_factors").fetchone()["n"] == 0


def test_an_undo_that_joins_a_profile_keeps_the_accounts_picture(app, conn, copernica, deliver):
    me, undo = _moved_to_work(app, copernica, deliver)
    photo = encoded(Image.new("RGB", (8, 8), "red"), "PNG")
    put = me.put("/v1/me/picture", data=photo, headers={"Content-Type": "image/png"})
    assert put.status_code == 200, put.get_data(as_text=True)
    profile = {"email": "anna@example.com", "source": "webinar"}
    assert copernica.post("/v1/profiles", json=profile).status_code == 201
    undone = copernica.post("/v1/auth/email-change/undo", json={"token": undo})
    assert undone.status_code == 200, undone.get_data(as_text=True)
    rows = conn.execute("select user_id, etag from pictures").fetchall()
    assert [(str(r["user_id"]), r["etag"]) for r in rows] == [
        (undone.get_json()["id"], put.get_json()["etag"])
    ]
