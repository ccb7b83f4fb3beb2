"""What a stranger cannot do to the owner of an address, as an outside attack tried it
(issue 21): pile up registrations, spend the mails, void the owner's links."""

from tests.api.test_accounts import OTHER_PASSWORD, login, sign_up
from tests.outbox import mailed

OWNER = {"client_ip": "198.51.100.20", "user_agent": "Anna's laptop"}


def _reset(site, browser, email="anna@example.com"):
    answer = site.post("/v1/auth/password-reset", json={"email": email, **browser})
    assert answer.status_code in (202, 429), answer.get_data(as_text=True)
    return answer


def _live(conn, token: str) -> bool:
    row = conn.execute(
        "select used_at is null and expires_at > now() as live from account_tokens"
        " where token_hash = sha256(convert_to(%s, 'UTF8'))",
        (token,),
    ).fetchone()
    return row["live"]


def test_a_new_reset_voids_no_link_sent_before_and_using_one_voids_the_rest(site, conn):
    sign_up(site, conn)
    links = []
    for _ in range(3):
        _reset(site, OWNER)
        links.append(mailed(conn, "anna@example.com", "password_reset")["token"])
    assert len(set(links)) == 3 and all(_live(conn, link) for link in links)
    confirm = {"token": links[1], "new_password": OTHER_PASSWORD, **OWNER}
    assert site.post("/v1/auth/password-reset/confirm", json=confirm).status_code == 204
    assert not any(_live(conn, link) for link in links)
    assert login(site, password=OTHER_PASSWORD, **OWNER).status_code == 200
