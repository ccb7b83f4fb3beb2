import ast
import importlib.util
import sys
import threading

import psycopg
import pytest

from identity.embedded import ensure_database
from identity.services.contact import email_key
from identity.store import migrations


@pytest.fixture
def empty_database(server_url, worker_id):
    return ensure_database(server_url, f"identity_empty_{worker_id}", fresh=True)


def test_every_migration_is_applied_in_order_and_recorded(empty_database):
    with psycopg.connect(empty_database, autocommit=True) as conn:
        assert migrations.applied(conn) is None
        names = [path.stem for path in migrations.available()]
        assert names == sorted(names) and names
        assert migrations.upgrade(conn) == names
        assert migrations.pending(conn) == []
        assert migrations.upgrade(conn) == []


def test_two_replicas_starting_together_apply_each_migration_once(empty_database):
    results, errors = [], []
    barrier = threading.Barrier(2)

    def start_replica():
        try:
            with psycopg.connect(empty_database, autocommit=True) as conn:
                barrier.wait()
                results.append(migrations.upgrade(conn))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start_replica) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    everything = [path.stem for path in migrations.available()]
    assert sorted(results, key=len) == [[], everything]
    with psycopg.connect(empty_database) as conn:
        rows = conn.execute("select id from schema_migrations order by id").fetchall()
    assert [row[0] for row in rows] == everything


def test_a_failing_migration_leaves_nothing_behind(empty_database, tmp_path):
    (tmp_path / "0001_good.sql").write_text("create table good (id int);")
    (tmp_path / "0002_bad.sql").write_text("create table half (id int); select 1/0;")
    with psycopg.connect(empty_database, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DivisionByZero):
            migrations.upgrade(conn, tmp_path)
        assert migrations.applied(conn) == {"0001_good"}
        assert conn.execute("select to_regclass('half')").fetchone()[0] is None
        assert migrations.pending(conn, tmp_path) == ["0002_bad"]


def test_a_badly_named_migration_file_is_refused(tmp_path):
    (tmp_path / "1_oops.sql").write_text("select 1;")
    with pytest.raises(ValueError, match=r"0001_name\.sql"):
        migrations.available(tmp_path)


def _migrate_to(conn, name: str, tmp_path) -> None:
    """Apply the real migrations up to and including `name`."""
    for path in migrations.available():
        if path.stem <= name:
            (tmp_path / path.name).write_bytes(path.read_bytes())
    migrations.upgrade(conn, tmp_path)


def test_the_address_key_migration_keys_existing_rows_in_python(empty_database, tmp_path):
    with psycopg.connect(empty_database, autocommit=True) as conn:
        _migrate_to(conn, "0001_sites_and_users", tmp_path)
        conn.execute(
            "insert into users (email) values ('Anna@Example.com'), ('İstanbul@example.com'),"
            " ('ΣΑΣ@example.com')"
        )
        migrations.upgrade(conn)
        keys = {row[0]: row[1] for row in conn.execute("select email, email_key from users")}
        assert keys == {
            "Anna@Example.com": "anna@example.com",
            "İstanbul@example.com": "i\u0307stanbul@example.com",
            "ΣΑΣ@example.com": "σασ@example.com",
        }
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "insert into users (email, email_key) values ('sas@example.com', 'σασ@example.com')"
            )


def test_addresses_that_come_to_share_a_key_stop_the_migration_unmerged(empty_database, tmp_path):
    with psycopg.connect(empty_database, autocommit=True) as conn:
        _migrate_to(conn, "0001_sites_and_users", tmp_path)
        conn.execute(
            "insert into users (email) values ('straße@example.de'), ('STRASSE@example.de')"
        )
        with pytest.raises(RuntimeError, match="merge them first"):
            migrations.upgrade(conn)
        assert migrations.pending(conn) != []
        columns = conn.execute(
            "select count(*) from information_schema.columns where column_name = 'email_key'"
        ).fetchone()[0]
        assert columns == 0


def test_the_domain_migration_keys_each_domain_as_dns_knows_it(empty_database, tmp_path):
    with psycopg.connect(empty_database, autocommit=True) as conn:
        _migrate_to(conn, "0005_signing_keys", tmp_path)
        # Keyed as 0002 first keyed them: the whole address case-folded.
        conn.execute(
            "insert into users (email, email_key) values"
            " ('anna@straße.de', 'anna@strasse.de'), ('bob@ΣΑΣ.gr', 'bob@σασ.gr'),"
            " ('carl@example.com', 'carl@example.com')"
        )
        migrations.upgrade(conn)
        keys = {row[0]: row[1] for row in conn.execute("select email, email_key from users")}
        assert keys == {
            "anna@straße.de": "anna@xn--strae-oqa.de",
            "bob@ΣΑΣ.gr": "bob@xn--mxa9ab.gr",
            "carl@example.com": "carl@example.com",
        }
        conn.execute(
            "insert into users (email, email_key) values ('anna@strasse.de', 'anna@strasse.de')"
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(
                "insert into users (email, email_key) values ('Anna@STRASSE.de', 'anna@strasse.de')"
            )


def test_the_key_schedule_migration_keeps_the_eddsa_keys_signing_as_they_did(
    empty_database, tmp_path
):
    with psycopg.connect(empty_database, autocommit=True) as conn:
        _migrate_to(conn, "0011_sites_of_their_own", tmp_path)
        conn.execute(
            "insert into signing_keys (kid, algorithm, public_jwk, private_key, created_at)"
            " values ('old', 'EdDSA', '{}', '\\x00', now() - interval '1 day')"
        )
        migrations.upgrade(conn)
        row = conn.execute(
            "select algorithm, created_at, signs_from, revoked_at from signing_keys"
        ).fetchone()
        assert row[0] == "EdDSA" and row[1] == row[2] and row[3] is None
        conn.execute("update signing_keys set retired_at = now(), publish_until = now()")
        conn.execute(
            "insert into signing_keys (kid, algorithm, public_jwk, private_key)"
            " values ('new', 'ES256', '{}', '\\x00')"
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "insert into signing_keys (kid, algorithm, public_jwk, private_key,"
                " retired_at, publish_until) values ('x', 'HS256', '{}', '\\x00', now(), now())"
            )


# What a migration may import besides the standard library: packages whose versions the
# locks pin. Nothing of the project's own, which can change after a migration is written.
_THIRD_PARTY = {"psycopg", "idna"}


def _imports(path) -> list[tuple[str, int]]:
    """Each module a file imports, with its level (0: absolute, 1+: relative)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


@pytest.mark.parametrize(
    "path", [p for p in migrations.available() if p.suffix == ".py"], ids=lambda p: p.stem
)
def test_a_migration_imports_nothing_of_the_project(path):
    imported = _imports(path)
    assert imported, "a Python migration imports at least what its upgrade() uses"
    for module, level in imported:
        top = module.partition(".")[0]
        assert level == 0, f"{path.name}: relative import of {module!r}"
        assert top in sys.stdlib_module_names or top in _THIRD_PARTY, (
            f"{path.name} imports {module!r}: a migration runs as it was written, so it"
            " keeps its own copy of what it needs"
        )


def _migration(stem: str):
    (path,) = [p for p in migrations.available() if p.stem == stem]
    spec = importlib.util.spec_from_file_location(f"frozen_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Addresses whose keys are easy to get wrong: ASCII in any case, dotted local parts,
# Unicode's special casings (ß, İ, dotless i, final ς, ligatures, the Kelvin sign, titlecase
# digraphs), composed and decomposed accents, IDN domains in either case, full-width
# forms, domains already in xn-- form, and domains IDNA refuses.
TRICKY_ADDRESSES = [
    "anna@example.com",
    "Anna.Maria@Example.COM",
    "ANNA.MARIA+NEWS@SUB.EXAMPLE.CO.UK",
    "a.b.c.d@example.com",
    '"quoted.local"@example.com',
    "straße@example.de",
    "STRASSE@example.de",
    "Straẞe@example.de",
    "İstanbul@example.com",
    "istanbul@example.com",
    "ıstanbul@example.com",
    "ΣΑΣ@example.com",
    "σας@example.com",
    "σασ@example.com",
    "ﬁle@example.com",
    "\u212aelvin@example.com",
    "ǅemal@example.com",
    "josé@example.com",
    "jose\u0301@example.com",
    "JOSÉ@EXAMPLE.COM",
    "用户@例子.广告",
    "anna@straße.de",
    "anna@STRASSE.de",
    "anna@ΣΑΣ.gr",
    "anna@σας.gr",
    "bob@bücher.example",
    "Bob@BÜCHER.example",
    "bob@bu\u0308cher.example",
    "ｃａｒｌ@ｅｘａｍｐｌｅ.com",
    "carl@İstanbul.example",
    "carl@xn--strae-oqa.de",
    "carl@XN--STRAE-OQA.DE",
    "dora@-leading-hyphen.ελ",
    "dora@empty..ελ",
    "dora@ελ",
    "no-at-sign-é",
]


@pytest.mark.parametrize("address", TRICKY_ADDRESSES)
def test_0006_keeps_a_copy_of_the_address_key_that_agrees_with_the_live_one(address):
    """0006 holds the key as the live email_key() computes it today; a later change to
    the live function shows up here as a deliberate difference."""
    assert _migration("0006_email_key_domains").email_key(address) == email_key(address)


@pytest.mark.parametrize("address", TRICKY_ADDRESSES)
def test_0002_keeps_the_address_key_of_its_day_which_0006_mends(address):
    """0002's copy is the key before domains were kept in their IDNA form: the same as
    today's for every address with an ASCII domain; 0006 keys again every address with
    a character outside ASCII, and the two together give today's key."""
    then = _migration("0002_email_key").email_key(address)
    if address.rpartition("@")[2].isascii():
        assert then == email_key(address)
    mended = _migration("0006_email_key_domains").email_key(address)
    assert (then if address.isascii() else mended) == email_key(address)


def test_0002_case_folded_the_domain_too():
    then = _migration("0002_email_key").email_key
    assert then("anna@straße.de") == "anna@strasse.de" != email_key("anna@straße.de")
    assert then("anna@ΣΑΣ.gr") == "anna@σασ.gr" != email_key("anna@ΣΑΣ.gr")
