"""The address key keeps each domain as DNS knows it (its IDNA form).

0002 case-folded whole addresses, domain included, so straße.de and strasse.de (or two
Greek names that differ in a final sigma), different domains with different owners,
gave one key: two people's addresses would have merged into one record. Only addresses
with non-ASCII characters can change key. Addresses that would now share a key stop the
migration with the ids to merge by hand.
"""

from psycopg.rows import tuple_row

from identity.services.contact import email_key

_BATCH = 10_000


def upgrade(conn) -> None:
    conn.execute("drop index users_email_key")
    with conn.cursor(name="users_to_rekey", row_factory=tuple_row) as rows:
        rows.execute("select id, email from users where email ~ '[^\\x01-\\x7f]'")
        while batch := rows.fetchmany(_BATCH):
            conn.execute(
                """
                update users u set email_key = v.key
                from unnest(%(ids)s::uuid[], %(keys)s::text[]) as v(id, key)
                where u.id = v.id and u.email_key is distinct from v.key
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
    conn.execute("create unique index users_email_key on users (email_key)")
