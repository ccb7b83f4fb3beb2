"""The address key keeps each domain as DNS knows it (its IDNA form).

0002 case-folded whole addresses, domain included, so straße.de and strasse.de (or two
Greek names that differ in a final sigma), different domains with different owners,
gave one key: two people's addresses would have merged into one record. Only addresses
with non-ASCII characters can change key. Addresses that would now share a key stop the
migration with the ids to merge by hand.
"""

import unicodedata

import idna
from psycopg.rows import tuple_row

_BATCH = 10_000


def email_key(address: str) -> str:
    """identity.services.contact.email_key as it was when this migration was written
    (commit 04023d5), frozen here: the local part under Unicode's canonical caseless
    matching (NFC of the case-folded NFD), the domain in its IDNA (xn--) form.

    Assumes Python's Unicode database (3.11: Unicode 14.0; its case folding and
    normalisation of assigned characters are stable) and idna's UTS #46 mapping
    (`idna.encode(domain, uts46=True)`, non-transitional), as locked then: idna 3.20 with
    the IDNA tables of Unicode 18.0. A later idna may map or refuse a domain of newly
    assigned characters differently, here and in the live function alike.
    """
    if address.isascii():
        return address.lower()
    local, at, domain = address.rpartition("@")
    local = unicodedata.normalize("NFC", unicodedata.normalize("NFD", local).casefold())
    if domain.isascii():
        return f"{local}{at}{domain.lower()}"
    try:
        return f"{local}{at}{idna.encode(domain, uts46=True).decode('ascii').lower()}"
    except idna.IDNAError:
        # Not an address the record could hold (every stored domain encodes), so a key
        # with a Unicode domain, which no stored key has, finds nothing.
        return f"{local}{at}{unicodedata.normalize('NFC', domain.casefold())}"


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
