"""The suppression list: the addresses of erased people, as a keyed hash of each address's
key (nothing else), so that no site, form or import subscribes such an address to a list
again without fresh consent confirmed from the mailbox. Where a list asks no confirmation,
a suppressed address gets one all the same; an import's consent brought from elsewhere is
not taken for it. A confirmed subscription (the mailbox's owner clicked) lifts it, as does
the signed-in person subscribing themselves (their sign-in proved the address)."""

import hashlib
import hmac
from collections.abc import Iterable

import psycopg

from identity.security.derived_keys import SUPPRESSED_ADDRESSES, derived_key
from identity.store import erasures as store


class Suppression:
    def __init__(self, secret_key: str):
        self._key = derived_key(secret_key, SUPPRESSED_ADDRESSES)

    def hash(self, address_key: str) -> bytes:
        return hmac.digest(self._key, address_key.encode("utf-8", "surrogatepass"), hashlib.sha256)

    def add(self, conn: psycopg.Connection, address_key: str) -> None:
        store.suppress(conn, self.hash(address_key))

    def lift(self, conn: psycopg.Connection, address_key: str) -> None:
        store.lift_suppression(conn, self.hash(address_key))

    def held(self, conn: psycopg.Connection, address_keys: Iterable[str]) -> set[str]:
        """Those of `address_keys` on the list (one statement; none asked for none)."""
        hashes = {self.hash(key): key for key in address_keys}
        if not hashes:
            return set()
        return {hashes[h] for h in store.suppressed_of(conn, list(hashes))}
