"""The user record's SQL called directly: what each function writes and reads back, and
which row locks it takes (on separate, committing connections)."""

import psycopg
import pytest
from psycopg.rows import dict_row

from identity.store import users
from tests.store.records import record


def _new(email: str, **fields) -> dict:
    sources = users.field_sources_json({name: {"source": "api"} for name in ("email", *fields)})
    return {"email": email, "email_key": email, **fields, "field_sources": sources}


def test_insert_new_writes_only_addresses_not_yet_known(conn):
    anna = record(conn, first_name="Anna")
    inserted = users.insert_new(
        conn, [_new("anna@example.com", first_name="Other"), _new("bob@example.com")]
    )
    assert list(inserted) == ["bob@example.com"]
    assert users.get_by_email(conn, "anna@example.com")["first_name"] == "Anna"
    bob = users.get_by_id(conn, inserted["bob@example.com"])
    assert bob["id"] != anna and bob["email"] == "bob@example.com"
    # What a record says before anyone gave it more: the defaults in force.
    assert (bob["gender"], bob["language"], bob["status"]) == ("unspecified", "en", "minimal")
    assert bob["field_sources"] == {"email": {"source": "api"}}
    assert users.insert_new(conn, []) == {}


def test_unknown_ids_and_addresses_find_nothing(conn):
    user_id = record(conn)
    conn.execute("delete from users")
    assert users.get_by_id(conn, user_id) is None
    assert users.get_by_email(conn, "anna@example.com") is None


def test_fill_blanks_sets_what_is_given_and_leaves_the_rest(conn):
    user_id = record(conn, first_name="Anna", last_name="Jansen")
    users.fill_blanks(
        conn,
        [
            {
                "id": user_id,
                "first_name": None,
                "phone": "+31201234567",
                "field_sources": users.field_sources_json({"phone": {"source": "import"}}),
            }
        ],
    )
    user = users.get_by_id(conn, user_id)
    assert (user["first_name"], user["last_name"], user["phone"]) == (
        "Anna",
        "Jansen",
        "+31201234567",
    )
    assert user["field_sources"]["phone"] == {"source": "import"}
    assert user["field_sources"]["first_name"] == {"source": "test"}  # kept beside it


def test_lock_by_email_answers_the_known_records_by_key(conn):
    anna = record(conn, first_name="Anna")
    bob = record(conn, "bob@example.com")
    found = users.lock_by_email(conn, ["bob@example.com", "nobody@example.com", "anna@example.com"])
    assert set(found) == {"anna@example.com", "bob@example.com"}
    assert found["anna@example.com"]["id"] == anna and found["bob@example.com"]["id"] == bob
    assert found["anna@example.com"]["first_name"] == "Anna"
    assert users.lock_by_email(conn, []) == {}


def test_account_columns_by_key_and_by_id(conn):
    user_id = record(conn, first_name="Anna")
    by_key = users.lock_by_email_key(conn, "anna@example.com")
    assert by_key["id"] == user_id and by_key["password_hash"] is None
    assert by_key["email_verified_at"] is None and by_key["language"] == "en"
    assert users.account_of(conn, user_id) == users.lock_user(conn, user_id)
    assert users.account_of(conn, user_id)["field_sources"]["first_name"] == {"source": "test"}
    assert users.lock_by_email_key(conn, "nobody@example.com") is None
    conn.execute("delete from users")
    assert users.account_of(conn, user_id) is None and users.lock_user(conn, user_id) is None


@pytest.mark.committing
@pytest.mark.parametrize(
    "lock",
    [
        lambda c, user_id: users.lock_user(c, user_id),
        lambda c, user_id: users.lock_by_email_key(c, "anna@example.com"),
        lambda c, user_id: users.lock_by_email(c, ["anna@example.com"]),
    ],
    ids=["lock_user", "lock_by_email_key", "lock_by_email"],
)
def test_a_locked_record_keeps_other_writers_out_but_not_its_foreign_keys(
    committing_db, database_url, lock
):
    user_id = record(committing_db)
    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as holder,
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as other,
        holder.transaction(),
    ):
        other.execute("set lock_timeout = '5s'")  # a wait that should not be is a failure
        lock(holder, user_id)
        with pytest.raises(psycopg.errors.LockNotAvailable), other.transaction():
            other.execute("select from users where id = %s for no key update nowait", (user_id,))
        # A row that refers to the record (its key share lock) is not held up: a flag or
        # an event written beside a locked record cannot deadlock with its holder.
        users.remember_password(other, user_id, "$argon2id$beside", keep=5)
    assert users.previous_password_hashes(committing_db, user_id, 5) == ["$argon2id$beside"]


@pytest.mark.committing
def test_reading_the_account_takes_no_lock(committing_db, database_url):
    user_id = record(committing_db)
    with (
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as reader,
        psycopg.connect(database_url, autocommit=True, row_factory=dict_row) as other,
        reader.transaction(),
    ):
        other.execute("set lock_timeout = '5s'")
        assert users.account_of(reader, user_id)["id"] == user_id
        other.execute("select from users where id = %s for update nowait", (user_id,))


def test_proving_the_address_sets_the_password_and_the_persons_fields(conn):
    user_id = record(conn, first_name="Site's name")
    users.prove_address(
        conn, user_id, "$argon2id$first", {"first_name": "Anna"}, {"first_name": {"source": "user"}}
    )
    account = users.account_of(conn, user_id)
    assert account["password_hash"] == "$argon2id$first"
    assert account["email_verified_at"] is not None and account["status"] == "registered"
    assert account["first_name"] == "Anna"  # the person's own, over the site's
    assert account["field_sources"]["first_name"] == {"source": "user"}
    registered_at = users.get_by_id(conn, user_id)["registered_at"]
    conn.execute("update users set registered_at = registered_at - interval '1 day'")
    users.prove_address(conn, user_id, "$argon2id$second", {}, {})
    again = users.get_by_id(conn, user_id)
    assert again["registered_at"] < registered_at  # registered once, whatever comes after
    assert users.account_of(conn, user_id)["password_hash"] == "$argon2id$second"


def test_set_password_replaces_the_hash(conn):
    user_id = record(conn)
    users.set_password(conn, user_id, "$argon2id$new")
    assert users.account_of(conn, user_id)["password_hash"] == "$argon2id$new"


def test_a_rehash_lands_only_on_the_hash_it_was_made_from(conn):
    user_id = record(conn)
    users.set_password(conn, user_id, "$argon2id$old")
    users.set_password(conn, user_id, "$argon2id$changed-meanwhile")
    users.rehash_password(conn, user_id, "$argon2id$old", "$argon2id$rehashed")
    assert users.account_of(conn, user_id)["password_hash"] == "$argon2id$changed-meanwhile"
    users.rehash_password(conn, user_id, "$argon2id$changed-meanwhile", "$argon2id$rehashed")
    assert users.account_of(conn, user_id)["password_hash"] == "$argon2id$rehashed"


def test_a_changed_address_is_found_by_its_new_key_only(conn):
    user_id = record(conn, first_name="Anna")
    users.change_email(conn, user_id, "Anna@Example.org", "anna@example.org", {"source": "user"})
    assert users.get_by_email(conn, "anna@example.com") is None
    moved = users.get_by_email(conn, "anna@example.org")
    assert moved["id"] == user_id and moved["email"] == "Anna@Example.org"
    assert moved["field_sources"]["email"] == {"source": "user"}
    assert moved["field_sources"]["first_name"] == {"source": "test"}


def test_the_persons_edits_set_and_clear_what_they_name(conn):
    user_id = record(conn, first_name="Anna", last_name="Jansen", phone="+31201234567")
    users.edit_fields(
        conn, user_id, {"first_name": "Anne", "phone": None}, {"first_name": {"source": "user"}}
    )
    user = users.get_by_id(conn, user_id)
    assert (user["first_name"], user["last_name"], user["phone"]) == ("Anne", "Jansen", None)
    assert user["field_sources"]["first_name"] == {"source": "user"}
    assert user["field_sources"]["last_name"] == {"source": "test"}
    users.edit_fields(conn, user_id, {}, {"last_name": {"source": "nobody"}})
    assert users.get_by_id(conn, user_id)["field_sources"]["last_name"] == {"source": "test"}


def test_the_password_history_keeps_the_last_few_newest_first(conn):
    anna, bob = record(conn), record(conn, "bob@example.com")
    users.remember_password(conn, bob, "$argon2id$bob", keep=2)
    for n in range(5):
        users.remember_password(conn, anna, f"$argon2id${n}", keep=3)
    assert users.previous_password_hashes(conn, anna, 10) == [
        "$argon2id$4",
        "$argon2id$3",
        "$argon2id$2",
    ]
    assert users.previous_password_hashes(conn, anna, 2) == ["$argon2id$4", "$argon2id$3"]
    assert users.previous_password_hashes(conn, bob, 10) == ["$argon2id$bob"]
    count = conn.execute("select count(*) as n from password_history").fetchone()["n"]
    assert count == 4


def test_a_join_says_what_becomes_of_every_table_that_names_a_user(conn):
    """A new table with a user id must be given its place in a join (moved, copied or
    dropped with the profile), or the undo of a change of address would lose its rows or
    fail on them."""
    assert foreign_keys_to_users(conn) == set(users.JOINED_ROWS)


def foreign_keys_to_users(conn) -> set[str]:
    """Every table with a foreign key to users, and users itself."""
    naming = conn.execute(
        """
        select distinct con.conrelid::regclass::text as table_name
        from pg_constraint con
        where con.contype = 'f' and con.confrelid = 'users'::regclass
        """
    ).fetchall()
    return {row["table_name"] for row in naming} | {"users"}


def test_a_join_keeps_the_accounts_own_flag_of_a_list_both_records_have(conn):
    account = record(conn, "anna@work.example", first_name="Anna")
    profile = record(conn, "anna@example.com", first_name="Annie", last_name="Jansen")
    flags = [
        (account, 1, "unsubscribed", "2026-01-01"),
        (profile, 1, "pending", "2026-06-01"),
        (account, 2, "subscribed", "2026-06-01"),
        (profile, 2, "unsubscribed", "2026-01-01"),
        (profile, 3, "subscribed", "2026-03-01"),
    ]
    for user_id, newsletter, state, at in flags:
        conn.execute(
            "insert into subscriptions values (%s, %s, %s, %s)", (user_id, newsletter, state, at)
        )
    users.join_minimal_into(conn, account, users.lock_holder(conn, "anna@example.com"))
    kept = conn.execute(
        "select newsletter, state from subscriptions where user_id = %s order by newsletter",
        (account,),
    ).fetchall()
    assert [(row["newsletter"], row["state"]) for row in kept] == [
        (1, "unsubscribed"),
        (2, "subscribed"),
        (3, "subscribed"),
    ]
    joined = users.get_by_id(conn, account)
    assert (joined["first_name"], joined["last_name"]) == ("Anna", "Jansen")
    assert joined["field_sources"]["last_name"] == {"source": "test"}
    assert users.get_by_email(conn, "anna@example.com") is None
