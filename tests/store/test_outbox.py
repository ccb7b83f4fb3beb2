"""The outbox's SQL that the commands use, called directly: a mail queued, given up with
its last answer, queued again, listed, and when the next one falls due. (Claiming mail
and recording what the relay answered belong to the courier and are tested with it.)"""

from identity.store import outbox


def _queue(conn, to="anna@example.com", template="verify_email") -> int:
    return outbox.insert(conn, template, to, "nl", {"token": "secret", "first_name": "Anna"})


def _state(conn, mail_id) -> dict:
    return conn.execute(
        "select status, attempts, last_error, failed_at, mail_values from outbox where id = %s",
        (mail_id,),
    ).fetchone()


def test_a_queued_mail_is_due_now_with_its_values(conn):
    conn.execute("delete from outbox")
    mail_id = _queue(conn)
    mail = outbox.get(conn, mail_id)
    assert (mail["template"], mail["recipient"], mail["language"]) == (
        "verify_email",
        "anna@example.com",
        "nl",
    )
    assert (mail["status"], mail["attempts"]) == ("queued", 0)
    assert mail["message_uuid"] is not None
    assert _state(conn, mail_id)["mail_values"] == {"token": "secret", "first_name": "Anna"}
    assert outbox.next_due(conn) == mail["next_attempt_at"]
    assert outbox.get(conn, mail_id + 1000) is None


def test_the_next_due_is_the_earliest_queued_mail(conn):
    conn.execute("delete from outbox")
    assert outbox.next_due(conn) is None
    later, sooner, failed = _queue(conn), _queue(conn), _queue(conn)
    conn.execute(
        "update outbox set next_attempt_at = now() + make_interval(mins => m)"
        " from (values (%s::bigint, 10), (%s, 5), (%s, 1)) as v(id, m) where outbox.id = v.id",
        (later, sooner, failed),
    )
    outbox.give_up(conn, failed)
    assert outbox.next_due(conn) == outbox.get(conn, sooner)["next_attempt_at"]


def test_giving_up_fails_a_queued_mail_and_keeps_its_last_answer(conn):
    mail_id = _queue(conn)
    conn.execute(
        "update outbox set attempts = 3, last_error = '451 try later' where id = %s", (mail_id,)
    )
    outbox.give_up(conn, mail_id)
    state = _state(conn, mail_id)
    assert (state["status"], state["attempts"], state["last_error"]) == (
        "failed",
        3,
        "451 try later",
    )
    assert state["failed_at"] is not None


def test_giving_up_leaves_a_sent_mail_sent(conn):
    mail_id = _queue(conn)
    conn.execute("update outbox set status = 'sent', sent_at = now() where id = %s", (mail_id,))
    outbox.give_up(conn, mail_id)
    assert _state(conn, mail_id)["status"] == "sent"


def test_a_failed_mail_is_queued_again_from_the_start(conn):
    mail_id = _queue(conn)
    conn.execute("update outbox set attempts = 8 where id = %s", (mail_id,))
    conn.execute("update outbox set mail_values = mail_values - 'token' where id = %s", (mail_id,))
    outbox.give_up(conn, mail_id)
    assert outbox.requeue(conn, mail_id) == "failed"
    state = _state(conn, mail_id)
    assert (state["status"], state["attempts"], state["failed_at"]) == ("queued", 0, None)
    assert state["mail_values"]  # a mail without a link keeps its values, to send
    assert outbox.requeue(conn, mail_id) == "queued"  # not failed: left as it is
    assert _state(conn, mail_id)["status"] == "queued"
    assert outbox.requeue(conn, mail_id + 1000) is None


def test_mails_are_listed_newest_first_failed_ones_alone_if_asked(conn):
    conn.execute("delete from outbox")
    first, failed, last = _queue(conn), _queue(conn, "bob@example.com"), _queue(conn)
    outbox.give_up(conn, failed)
    assert [m["id"] for m in outbox.list_mails(conn, failed_only=False, limit=10)] == [
        last,
        failed,
        first,
    ]
    assert [m["id"] for m in outbox.list_mails(conn, failed_only=False, limit=2)] == [
        last,
        failed,
    ]
    (only,) = outbox.list_mails(conn, failed_only=True, limit=10)
    assert (only["id"], only["recipient"], only["status"]) == (failed, "bob@example.com", "failed")
    assert "mail_values" not in only  # a listing shows no token


def test_a_failed_mail_with_a_link_loses_it_and_is_not_queued_again(conn):
    mail_id = _queue(conn)
    outbox.give_up(conn, mail_id)
    assert _state(conn, mail_id)["mail_values"] is None  # the live token went at once
    assert outbox.requeue(conn, mail_id) == "cleared"
    assert _state(conn, mail_id)["status"] == "failed"
