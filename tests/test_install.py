"""The project's wheel, installed away from the checkout, runs every command (`-m install`)."""

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import urllib.request
import zipfile
from pathlib import Path

import psycopg
import pytest

from identity.embedded import ensure_database
from identity.store import migrations
from tests.test_cli import call, free_port, stop, wait_ready

pytestmark = pytest.mark.install

PROJECT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(wheel, venv): the wheel installed alone into a venv of its own, which sees the test
    venv's packages but not its editable identity."""
    root = tmp_path_factory.mktemp("install")
    # Built from a copy: setuptools leaves build/ behind in the tree it builds, and a stale
    # build/ would slip deleted files into the wheel.
    source = root / "source"
    skip = shutil.ignore_patterns(".*", "build", "*.egg-info", "__pycache__")
    shutil.copytree(PROJECT_DIR, source, ignore=skip)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", root / "dist", source],
        check=True,
        timeout=120,
    )
    (wheel,) = (root / "dist").glob("identity-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, timeout=60)
    python = venv / "bin" / "python"
    subprocess.run(
        [*pip, "--python", python, "install", "--no-deps", "--no-index", wheel],
        check=True,
        timeout=120,
    )
    # Written after the install, so pip did not take the test venv's identity for this one.
    # A directory named in a .pth file joins sys.path without the .pth files in it, so the
    # test venv's editable identity stays out.
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    Path(site_packages, "test-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return wheel, venv


@pytest.fixture
def fresh_database_url(server_url, worker_id):
    return ensure_database(server_url, f"identity_install_{worker_id}", fresh=True)


def test_the_wheel_carries_the_packages_and_every_migration(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"identity/migrations/{p.name}" for p in migrations.available()} <= names
    assert "identity/mail/templates/verify_email.nl.jinja" in names
    # The /docs page and its script, which its Content-Security-Policy lets it run.
    assert {
        "identity/api/docs_page/swagger_ui.html",
        "identity/api/docs_page/swagger-init.js",
    } <= names
    assert {"identity/cli.py", "identity/gunicorn_conf.py", "schemas/__init__.py"} <= names


def test_the_installed_commands_migrate_issue_keys_write_openapi_and_serve(
    installed, fresh_database_url, tmp_path
):
    _, venv = installed
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
        "IDENTITY_DATABASE_URL": fresh_database_url,
        "IDENTITY_DATA_DIR": str(tmp_path / "data"),
        "PORT": str(free_port()),
    }

    def identity(*args):
        return subprocess.run(
            [venv / "bin" / "identity", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )

    where = subprocess.run(
        [venv / "bin" / "python", "-c", "import identity; print(identity.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv)

    identity("db", "upgrade")
    with psycopg.connect(fresh_database_url) as conn:
        applied = {row[0] for row in conn.execute("select id from schema_migrations")}
    assert applied == {p.stem for p in migrations.available()}

    key = identity("sites", "create", "x.example", "--scope", "profiles:write")
    key = key.stdout.splitlines()[-1]
    identity("openapi", "write", str(tmp_path / "openapi.json"))
    assert (tmp_path / "openapi.json").read_text() == (
        PROJECT_DIR / "openapi" / "openapi.json"
    ).read_text()

    base = f"http://127.0.0.1:{env['PORT']}"
    server = subprocess.Popen([venv / "bin" / "identity", "serve"], cwd=tmp_path, env=env)
    try:
        wait_ready(base, server)
        status, _ = call(base, "/v1/profiles", key, {"email": "a@x.example", "source": "event"})
        assert status == 201
        # The installed copy's /docs runs, as the page's policy lets it, its own script.
        with urllib.request.urlopen(f"{base}/docs", timeout=10) as page:
            assert b"/docs/assets/swagger-init.js" in page.read()
        with urllib.request.urlopen(f"{base}/docs/assets/swagger-init.js", timeout=10) as script:
            assert b"SwaggerUIBundle" in script.read()
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
    finally:
        stop(server)
    assert not (tmp_path / "data").exists(), "the embedded database was started"
