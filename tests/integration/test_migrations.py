import threading

import psycopg
import pytest

from identity.embedded import ensure_database
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
