"""The unit of work on real connections: at most one borrowed, lazily; one transaction;
commit-then-refuse; a deadlock run again; a held connection across commits."""

import threading

import psycopg
import pytest
from psycopg.rows import dict_row

from identity.errors import Unauthenticated
from identity.store import roles
from identity.store.transactions import UnitOfWork


class CountingLending:
    """Lends connections to `url` and counts what is out."""

    def __init__(self, url):
        self.url = url
        self.out = 0
        self.lent = 0

    def acquire(self):
        self.out += 1
        self.lent += 1
        return psycopg.connect(self.url, autocommit=True, row_factory=dict_row)

    def release(self, conn):
        self.out -= 1
        conn.close()


@pytest.fixture
def table(committing_db, owner_db):
    """A probe table the owner makes; the tests write it as the serving role, with the
    rights every table gets at an upgrade."""
    owner_db.execute("create table if not exists uow_probe (n int)")
    owner_db.execute("truncate uow_probe")
    serving = committing_db.execute("select current_user as name").fetchone()["name"]
    roles.grant_serving(owner_db, serving)
    yield committing_db
    owner_db.execute("drop table uow_probe")


def _count(conn) -> int:
    return conn.execute("select count(*) as n from uow_probe").fetchone()["n"]


def test_nothing_is_borrowed_until_the_database_is_used(database_url):
    lending = CountingLending(database_url)
    uow = UnitOfWork(lending)
    assert uow.run(lambda: "no database") == "no database"
    assert lending.lent == 0


def test_a_unit_borrows_one_connection_and_gives_it_back_on_commit(database_url, table):
    lending = CountingLending(database_url)
    uow = UnitOfWork(lending)

    def work():
        uow.conn.execute("insert into uow_probe values (1)")
        uow.conn.execute("insert into uow_probe values (2)")
        assert lending.out == 1
        return "done"

    assert uow.run(work) == "done"
    assert lending.out == 0 and lending.lent == 1
    assert _count(table) == 2


def test_what_is_written_is_not_seen_by_others_before_the_commit(database_url, table):
    uow = UnitOfWork(CountingLending(database_url))
    uow.conn.execute("insert into uow_probe values (1)")
    assert _count(table) == 0
    uow.commit()
    assert _count(table) == 1


def test_a_failure_rolls_the_whole_unit_back(database_url, table):
    lending = CountingLending(database_url)
    uow = UnitOfWork(lending)

    def work():
        uow.conn.execute("insert into uow_probe values (1)")
        raise ValueError("half way")

    with pytest.raises(ValueError):
        uow.run(work)
    assert _count(table) == 0
    assert lending.out == 0


def test_refuse_commits_what_is_written_then_raises(database_url, table):
    uow = UnitOfWork(CountingLending(database_url))

    def work():
        uow.conn.execute("insert into uow_probe values (1)")  # a failed attempt, recorded
        uow.refuse(Unauthenticated("wrong password"))

    with pytest.raises(Unauthenticated):
        uow.run(work)
    assert _count(table) == 1


def test_commit_gives_the_connection_back_and_the_unit_goes_on(database_url, table):
    lending = CountingLending(database_url)
    uow = UnitOfWork(lending)
    uow.conn.execute("insert into uow_probe values (1)")
    uow.commit()
    assert lending.out == 0  # nothing held while, say, argon2 runs
    uow.conn.execute("insert into uow_probe values (2)")
    uow.rollback()
    assert _count(table) == 1
    assert lending.lent == 2 and lending.out == 0


def test_one_statement_runs_outside_a_transaction(database_url, table):
    uow = UnitOfWork(CountingLending(database_url))
    uow.one_statement.execute("insert into uow_probe values (1)")
    assert _count(table) == 1  # committed by itself
    uow.close()


def test_held_keeps_one_connection_across_commits(database_url, table):
    lending = CountingLending(database_url)
    uow = UnitOfWork(lending)
    with uow.held() as conn:
        pid = conn.execute("select pg_backend_pid() as pid").fetchone()["pid"]
        for n in range(3):
            uow.run(lambda n=n: uow.conn.execute("insert into uow_probe values (%s)", (n,)))
            again = uow.one_statement.execute("select pg_backend_pid() as pid").fetchone()
            assert again["pid"] == pid
        assert lending.lent == 1
    assert lending.out == 0
    assert _count(table) == 3


def test_a_deadlock_is_run_again_whole(database_url, table):
    table.execute("insert into uow_probe values (1), (2)")
    both_locked_one = threading.Barrier(2)
    runs = {"a": 0, "b": 0}
    failures = []

    def writer(name, first, second):
        uow = UnitOfWork(CountingLending(database_url))

        def work():
            runs[name] += 1
            uow.conn.execute("update uow_probe set n = n where n = %s", (first,))
            if runs[name] == 1:
                both_locked_one.wait(timeout=10)
            uow.conn.execute("update uow_probe set n = n where n = %s", (second,))

        try:
            uow.run(work)
        except Exception as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [
        threading.Thread(target=writer, args=("a", 1, 2)),
        threading.Thread(target=writer, args=("b", 2, 1)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(runs.values())[1] == 2  # the one PostgreSQL chose as victim ran again


def test_work_that_committed_a_part_of_itself_is_not_run_again(database_url, table):
    """A login commits its counted attempt before it checks the password: after a
    deadlock later on, running it again would count that attempt twice."""
    from psycopg.errors import DeadlockDetected

    uow = UnitOfWork(CountingLending(database_url))
    runs = []

    def work():
        runs.append(1)
        uow.conn.execute("insert into uow_probe values (1)")
        uow.commit()  # this part stands, whatever comes after
        if len(runs) == 1:
            raise DeadlockDetected("deadlock detected")

    with pytest.raises(DeadlockDetected):
        uow.run(work)
    assert len(runs) == 1 and _count(table) == 1

    runs.clear()

    def whole():  # nothing committed on its way: run again, whole
        runs.append(1)
        uow.conn.execute("insert into uow_probe values (2)")
        if len(runs) == 1:
            raise DeadlockDetected("deadlock detected")

    uow.run(whole)
    assert len(runs) == 2 and _count(table) == 2
