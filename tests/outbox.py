"""What the service queued to mail, read back from the outbox as a user reads a mail."""


def mailed(conn, to: str, template: str) -> dict:
    """The values of the last mail of `template` queued for `to`."""
    row = conn.execute(
        "select mail_values, language from outbox where recipient = %s and template = %s"
        " order by id desc limit 1",
        (to, template),
    ).fetchone()
    assert row is not None, f"no {template} mail to {to}"
    return row["mail_values"] | {"language": row["language"]}
