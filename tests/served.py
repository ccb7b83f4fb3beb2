"""The service as `identity serve` runs it (gunicorn, our settings), for tests that need a
real server process."""

import os
import sys


def gunicorn_env(database_url: str, **settings) -> dict:
    """The environment without the caller's IDENTITY_* settings: the test database, no
    import helpers, and `settings` as IDENTITY_<NAME>."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")}
    return env | {
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_IMPORT_PROCESSES": "0",
        **{f"IDENTITY_{name}": str(value) for name, value in settings.items()},
    }


def gunicorn_command(port: int, app: str = "identity:create_app()") -> list[str]:
    """One gunicorn worker with our settings on 127.0.0.1:`port`."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "--config",
        "python:identity.gunicorn_conf",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        app,
    ]
