"""The Containerfile, built and run with podman (`make test-deep`, which installs podman
where it can): the migrations, the server and a mail courier, each the image's own
command, as uid 10001 on a read-only root file system, against a PostgreSQL of the test's
own reached through its Unix socket; the image's health check says healthy.

No base image can be pulled here (no container registry is reachable), so the test makes
the Debian bookworm the Containerfile starts from itself, with debootstrap from Debian's
packages, trusting what this machine trusts so that the build reaches PyPI as the
machine does. The Containerfile is the same; only who made the bookworm differs."""

import json
import os
import resource
import secrets
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import psycopg
import pytest

from identity.embedded import ensure_database, start_embedded
from tests.test_cli import call, free_port

pytestmark = [pytest.mark.deep, pytest.mark.slow]

PROJECT_DIR = Path(__file__).resolve().parents[1]
BASE = "localhost/identity-test-base:bookworm"
IMAGE = "localhost/identity:deep-test"
TRUST = Path(os.environ.get("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"))
SOCKET = "/run/postgresql/.s.PGSQL.5432"


@pytest.fixture(scope="module")
def podman(tmp_path_factory):
    """`podman …` as a list, with a configuration of the test's own: runc (this machine's
    sandbox refuses crun's cgroup set-up) and open-file and process limits within this
    machine's (podman's defaults are above them, and raising a limit is refused)."""
    if not (shutil.which("podman") and shutil.which("runc") and shutil.which("debootstrap")):
        pytest.skip(
            "podman is not installed: `apt-get install -y podman runc debootstrap`"
            " (make test-deep does, as root)"
        )
    files, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(
        f'[containers]\ndefault_ulimits = ["nofile={files}:{files}", "nproc=4096:4096"]\n'
        '[engine]\nruntime = "runc"\n'
    )
    env = {**os.environ, "CONTAINERS_CONF": str(conf)}

    def run(*args, check=True, timeout=120):
        return subprocess.run(
            ["podman", *args],
            env=env,
            check=check,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    return run


@pytest.fixture(scope="module")
def image(podman, tmp_path_factory):
    """The image built from the Containerfile on a bookworm made here (kept between runs,
    as the build's layers are)."""
    if podman("image", "exists", BASE, check=False).returncode != 0:
        if os.geteuid() != 0:
            pytest.skip("making the base image with debootstrap needs root")
        root = tmp_path_factory.mktemp("bookworm")
        subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", root, "http://deb.debian.org/debian"],
            check=True,
            capture_output=True,
            timeout=600,
        )
        # Taken into the image's trust store when the Containerfile installs ca-certificates.
        shutil.copy(TRUST, root / "usr/local/share/ca-certificates/this-machine.crt")
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["podman", "import", "-", BASE],
            stdin=tar.stdout,
            env={**os.environ},
            check=True,
            capture_output=True,
            timeout=300,
        )
        tar.wait()
    podman(
        "build",
        "--format=docker",  # OCI images have no HEALTHCHECK
        f"--build-arg=BASE={BASE}",
        "--tag",
        IMAGE,
        "--file",
        PROJECT_DIR / "Containerfile",
        PROJECT_DIR,
        timeout=900,
    )
    return IMAGE


@pytest.fixture
def database(tmp_path):
    """(host socket, URL inside a container) of a PostgreSQL of the test's own."""
    server = start_embedded(tmp_path / "pg")
    try:
        ensure_database(server.get_uri(), "identity")
        yield tmp_path / "pg" / ".s.PGSQL.5432"
    finally:
        server.cleanup()


def test_the_image_migrates_serves_and_delivers_as_a_user_on_a_read_only_root(
    podman, image, database
):
    port = free_port()
    settings = {
        "IDENTITY_DATABASE_URL": "postgresql://postgres@/identity?host=/run/postgresql",
        "IDENTITY_SECRET_KEY": secrets.token_urlsafe(32),
        "IDENTITY_PUBLIC_URL": "https://identity.example.com",
    }
    # What compose.yaml asks of every container of the image.
    hardened = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "all"]
    hardened += [f"--volume={database}:{SOCKET}"]
    hardened += [f"--env={name}={value}" for name, value in settings.items()]
    names = [f"identity-test-{name}-{port}" for name in ("web", "courier")]
    web, courier = names
    try:
        migrate = podman(
            "run", "--rm", "--no-healthcheck", *hardened, image, "identity", "db", "upgrade"
        )
        assert "migrations applied" in migrate.stderr + migrate.stdout

        podman(
            "run", "--detach", "--name", web, f"--publish=127.0.0.1:{port}:8000", *hardened, image
        )
        podman(
            "run",
            "--detach",
            "--name",
            courier,
            "--no-healthcheck",
            *hardened,
            image,
            "identity",
            "mail",
            "deliver",
        )
        base = f"http://127.0.0.1:{port}"
        ready = wait_for(lambda: urllib.request.urlopen(f"{base}/health/ready", timeout=2))
        assert json.load(ready)["status"] == "ok"

        # The image's own health check, run as its HEALTHCHECK says.
        podman("healthcheck", "run", web)
        assert (
            podman("inspect", "--format", "{{.State.Health.Status}}", web).stdout.strip()
            == "healthy"
        )
        # Not root, in either container; IDENTITY_ENV=production is the image's default.
        for name in names:
            assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
            assert podman("exec", name, "printenv", "IDENTITY_ENV").stdout.strip() == "production"

        # A registration's mail is taken by the courier container (the log is its relay:
        # no IDENTITY_SMTP_URL).
        created = podman(
            "exec",
            web,
            "identity",
            "sites",
            "create",
            "example.com",
            "--brand",
            "Example",
            "--pages",
            "https://www.example.com/account",
            "--scope",
            "auth",
        )
        key = created.stdout.strip().splitlines()[-1]
        status, _ = call(
            base,
            "/v1/auth/register",
            key,
            {
                "email": "anna@example.com",
                "password": "plum tractor quietly 83 violins",
                "client_ip": "203.0.113.7",
            },
        )
        assert status == 202
        with psycopg.connect(f"host={database.parent} user=postgres dbname=identity") as conn:
            sent = wait_for(
                lambda: conn.execute(
                    "select status from outbox where template = 'verify_email' and status = 'sent'"
                ).fetchone()
            )
        assert sent == ("sent",)
        assert "mail written to the log" in podman("logs", courier).stderr

        # Nothing written inside: the only change is podman's own /etc/hosts and kin.
        for name in names:
            assert podman("diff", name).stdout.split() in ([], ["C", "/etc"])
    finally:
        for name in names:
            podman("rm", "--force", "--time", "5", name, check=False)


def wait_for(attempt, seconds=60):
    """What `attempt` first returns that is truthy, trying for up to `seconds`; an OSError
    (not listening yet) is tried again."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            result = attempt()
        except OSError:
            if time.monotonic() > deadline:
                raise
        else:
            if result:
                return result
            assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.5)
