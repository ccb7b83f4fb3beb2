"""SQL for images kept one per owner: a person's picture (`PICTURES`), and whatever else
names its table and owner column the same way (a company's logo)."""

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql


@dataclass(frozen=True)
class ImageTable:
    """A table of images, one per owner: `owner` is its primary key column; the others
    are content_type, data, etag, width, height and updated_at."""

    table: str
    owner: str


PICTURES = ImageTable("pictures", "user_id")
LOGOS = ImageTable("company_logos", "company_id")


def _sql(query: str, where: ImageTable) -> sql.Composed:
    return sql.SQL(query).format(
        table=sql.Identifier(where.table), owner=sql.Identifier(where.owner)
    )


def image_of(
    conn: psycopg.Connection, where: ImageTable, owner_id: UUID, *, unless: list[str] | None = ()
) -> dict | None:
    """The owner's image (content_type, etag, width, height, updated_at, data), or None.
    `data` is None when its etag is one of `unless` (what a client has: its bytes need not
    come over the wire), or for `unless=None` (any etag will do)."""
    return conn.execute(
        _sql(
            """
            select content_type, etag, width, height, updated_at,
                   case when %(any)s or etag = any(%(unless)s) then null else data end as data
            from {table} where {owner} = %(owner_id)s
            """,
            where,
        ),
        {"owner_id": owner_id, "any": unless is None, "unless": list(unless or ())},
    ).fetchone()


def save(conn: psycopg.Connection, where: ImageTable, owner_id: UUID, image: Any) -> dict:
    """The owner's image is `image` (an identity.images.Image), whichever it was before;
    when it was changed."""
    return conn.execute(
        _sql(
            """
            insert into {table} ({owner}, content_type, data, etag, width, height)
            values (%(owner_id)s, %(content_type)s, %(data)s, %(etag)s, %(width)s, %(height)s)
            on conflict ({owner}) do update set
                content_type = excluded.content_type, data = excluded.data,
                etag = excluded.etag, width = excluded.width, height = excluded.height,
                updated_at = now()
            returning updated_at
            """,
            where,
        ),
        {
            "owner_id": owner_id,
            "content_type": image.content_type,
            "data": image.data,
            "etag": image.etag,
            "width": image.width,
            "height": image.height,
        },
    ).fetchone()


def remove(conn: psycopg.Connection, where: ImageTable, owner_id: UUID) -> bool:
    """Remove the owner's image; whether there was one."""
    deleted = conn.execute(
        _sql("delete from {table} where {owner} = %(owner_id)s", where), {"owner_id": owner_id}
    )
    return deleted.rowcount > 0
