"""A real PostgreSQL server for the tests: made by initdb in a temporary folder, on 127.0.0.1.

The server's programs are found in ``TRAINYARD_POSTGRES_BIN`` if set, else on the PATH, else in
Debian's ``/usr/lib/postgresql/*/bin`` (the newest). initdb refuses to run as root: as root the
server runs as the ``postgres`` system user (``TRAINYARD_POSTGRES_USER`` names another), which owns
the folder. A missing PostgreSQL fails the test with what to install; it never skips.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.service.conftest import free_port

BIN_ENV = "TRAINYARD_POSTGRES_BIN"
USER_ENV = "TRAINYARD_POSTGRES_USER"
DEBIAN_BINS = "/usr/lib/postgresql/*/bin"
INSTALL = (
    "PostgreSQL's server is needed for this test: install it (Debian/Ubuntu: apt-get install postgresql; "
    f".ci/run does), or set {BIN_ENV} to the folder that holds initdb and pg_ctl"
)


def server_bin() -> Path:
    """The folder of initdb and pg_ctl; AssertionError (what to install) when there is none."""
    given = os.environ.get(BIN_ENV)
    if given:
        folder = Path(given)
        assert (folder / "initdb").exists(), f"{BIN_ENV}={given}: no initdb there. {INSTALL}"
        return folder
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(
        glob.glob(DEBIAN_BINS), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0
    )
    for folder in reversed(versions):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    raise AssertionError(f"no initdb on the PATH nor in {DEBIAN_BINS}. {INSTALL}")


@dataclass
class Postgres:
    """A running server: its folder, port and the URL of its ``trainyard`` database."""

    folder: Path
    port: int
    bin: Path
    user: str | None  # the system user it runs as (None: this process's)

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "trainyard", driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def run(self, program: str, *arguments: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / program), *arguments]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{program} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        return done

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres() -> Postgres:
    """initdb a folder, start the server on a free port of 127.0.0.1, create the database."""
    import psycopg

    binaries = server_bin()
    user = None
    folder = Path(tempfile.mkdtemp(prefix="trainyard-postgres-"))  # not under pytest's 0700 folders
    if os.geteuid() == 0:
        user = os.environ.get(USER_ENV, "postgres")
        try:
            account = pwd.getpwnam(user)
        except KeyError:
            raise AssertionError(
                f"PostgreSQL refuses to run as root and there is no {user!r} user to run it as: "
                f"set {USER_ENV} to an unprivileged user. {INSTALL}"
            ) from None
        os.chown(folder, account.pw_uid, account.pw_gid)
    server = Postgres(folder, free_port(), binaries, user)
    server.run("initdb", "-D", str(server.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    options = (
        f"-c listen_addresses=127.0.0.1 -p {server.port} -k {server.data} -c fsync=off -c max_connections=60"
    )
    server.run(
        "pg_ctl",
        "-D",
        str(server.data),
        "-l",
        str(server.folder / "server.log"),
        "-o",
        options,
        "-w",
        "start",
    )
    with psycopg.connect(server.url("postgres", driver="postgresql"), autocommit=True) as connection:
        connection.execute("CREATE DATABASE trainyard")
    return server
