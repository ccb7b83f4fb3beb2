"""Backups that keep erasures: back up, erase, restore, reapply, and nothing of the person
is left; the ledger and the suppression list are not in the dump, so the restore leaves
them as they were."""

import subprocess

from identity.backups import pg_tool
from tests.api.test_accounts import BROWSER, PASSWORD, as_user
from tests.api.test_erasure import traces
from tests.outbox import mailed
from tests.sites import EVERY_LIST, site_key_for


def test_a_restored_backup_loses_the_erased_again(
    pooled_app, committing_db, cli, owner_url, tmp_path
):
    site = pooled_app.test_client()
    site.environ_base["HTTP_AUTHORIZATION"] = (
        f"Bearer {site_key_for(committing_db, 'copernica.com', lists=EVERY_LIST)}"
    )
    body = {"email": "anna@example.com", "password": PASSWORD, **BROWSER}
    assert site.post("/v1/auth/register", json=body).status_code == 202
    token = mailed(committing_db, "anna@example.com", "verify_email")["token"]
    anna = site.post("/v1/auth/verify-email", json={"token": token}).get_json()
    bob = site.post("/v1/profiles", json={"email": "bob@example.com", "source": "event"})

    dump = tmp_path / cli("backup", "--to", str(tmp_path)).output.strip().splitlines()[-1]
    assert dump.exists() and dump.name.startswith("identity-") and dump.suffix == ".dump"

    access = site.post("/v1/auth/login", json=body).get_json()["access_token"]
    proof = {"current_password": PASSWORD, **BROWSER}
    erased = as_user(pooled_app, access).delete("/v1/me", json=proof)
    assert erased.status_code == 204, erased.get_data(as_text=True)
    assert traces(committing_db, anna["id"], "anna@example.com") == {}

    restored = subprocess.run(
        [pg_tool("pg_restore"), "--clean", "--if-exists", "--dbname", owner_url, str(dump)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert restored.returncode == 0, restored.stderr
    # The backup brought her back; the ledger and the suppression list stayed as they were.
    assert traces(committing_db, anna["id"])
    assert committing_db.execute("select count(*) from erasures").fetchone()["count"] == 1
    assert (
        committing_db.execute("select count(*) from suppressed_addresses").fetchone()["count"] == 1
    )

    assert "erased again: 1" in cli("erasures", "reapply").output
    assert traces(committing_db, anna["id"], "anna@example.com") == {}
    # Everyone else is as the backup had them; a second run finds no one.
    assert committing_db.execute(
        "select 1 from users where id = %s", (bob.get_json()["id"],)
    ).fetchone()
    assert "erased again: 0" in cli("erasures", "reapply").output
