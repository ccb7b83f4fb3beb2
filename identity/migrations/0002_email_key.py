"""The address key in a column of its own, computed in Python by email_key().

Until now records were unique on PostgreSQL's lower(email), which depends on the
database's locale and disagrees with Python outside ASCII (İ, final ς): a look-up and a
merge could each find a different record, or none. Rows are keyed in batches with a
server-side cursor; addresses that now share a key stop the migration with the ids to
merge by hand, rather than joining two people's records unasked.
"""

import unicodedata

from psycopg.rows import tuple_row

_BATCH = 10_000


def email_key(address: str) -> str:
    """identity.services.contact.email_key as it was when this migration was written
    (commit d9790a9), frozen here: the whole address under Unicode's canonical caseless
    matching (NFC of the case-folded NFD), the domain included, which 0006 mended.

    Assumes only Python's Unicode database (3.11: Unicode 14.0). Unicode's stability
    policies keep the case folding and normalisation of assigned characters as they are,
    so a later Python changes no key of an address whose characters were assigned then.
    """
    if address.isascii():
        return address.lower()
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", address).casefold())


def upgrade(conn) -> None:
    conn.execute("alter table users add column email_key text")
    with conn.cursor(name="users_to_key", row_factory=tuple_row) as rows:
        rows.execute("select id, email from users")
        while batch := rows.fetchmany(_BATCH):
            conn.execute(
                """
                update users u set email_key = v.key
                from unnest(%(ids)s::uuid[], %(keys)s::text[]) as v(id, key)
                where u.id = v.id
                """,
                {"ids": [row[0] for row in batch], "keys": [email_key(row[1]) for row in batch]},
            )
    clashes = (
        conn.cursor(row_factory=tuple_row)
        .execute(
            """
        select array_agg(id::text order by created_at) from users
        group by email_key having count(*) > 1
        """
        )
        .fetchall()
    )
    if clashes:
        ids = "; ".join(", ".join(row[0]) for row in clashes[:20])
        raise RuntimeError(
            f"{len(clashes)} groups of records now share an address key; merge them first: {ids}"
        )
    conn.execute(
        """
        alter table users alter column email_key set not null;
        create unique index users_email_key on users (email_key);
        drop index users_email_unique;
        comment on column users.email_key is
            'email_key(email) in identity.services.contact: the address as one person';
        """
    )
