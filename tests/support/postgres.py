"""A private PostgreSQL 15 cluster for the tests: started once per test session, one fresh
database per server.

PostgreSQL refuses to run as root, so when the tests run as root the cluster is created and
started as the `postgres` user (`runuser -u postgres --`) in a temporary directory that user
owns; its socket lives in that directory and it listens on a free loopback port. `fsync` stays
on (the default): the tests rely on commits being durable, as production does.

    cluster = shared_cluster()           # starts it on first use; stopped at interpreter exit
    dsn = cluster.create_database()      # postgresql://postgres@127.0.0.1:PORT/perdure_N
"""

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from tests.support.ports import free_port

PG_BIN = Path(os.environ.get("PERDURE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """PostgreSQL 15 is not installed here (`.ci/run` installs it)."""


def _as_db_user() -> list[str]:
    """Command prefix running a program as the cluster's owner (postgres when we are root)."""
    return ["runuser", "-u", PG_USER, "--"] if os.geteuid() == 0 else []


class PostgresCluster:
    """One initdb'd cluster in a temp dir; `create_database()` hands out empty databases."""

    def __init__(self, options: str = "") -> None:
        if not (PG_BIN / "initdb").exists():
            raise PostgresUnavailable(f"no PostgreSQL binaries in {PG_BIN}; install postgresql-15")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="perdure-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self._names = itertools.count(1)
        self._lock = threading.Lock()
        self._started = False
        self.options = options  # more `-c name=value` server settings
        if os.geteuid() == 0:
            pw = pwd.getpwnam(PG_USER)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def _run(self, *argv: str) -> None:
        subprocess.run([*_as_db_user(), *argv], check=True, capture_output=True, timeout=START_TIMEOUT_S)

    def start(self) -> None:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", PG_USER, "-E", "UTF8")
        self.launch()

    def launch(self) -> None:
        """Start the postmaster on the data directory that is there (initdb'd or a base backup)."""
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200 "
            f"-c fsync=on -c synchronous_commit=on -c shared_buffers=64MB {self.options}"
        )
        self._run(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-o", options, "start"
        )
        self._started = True

    def postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        if self._started:
            self._started = False
            subprocess.run(
                [*_as_db_user(), str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
                capture_output=True,
                timeout=START_TIMEOUT_S,
            )
        shutil.rmtree(self.dir, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with psql (as a client over TCP) and return its unaligned output."""
        out = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                self.dsn(database),
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        return out.stdout.strip()

    def create_database(self, prefix: str = "perdure") -> str:
        """A new empty database; returns its DSN."""
        with self._lock:
            name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)


_SHARED: PostgresCluster | None = None
_SHARED_LOCK = threading.Lock()


def shared_cluster() -> PostgresCluster:
    """The session's cluster, started on first use and stopped when the interpreter exits."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            cluster = PostgresCluster()
            cluster.start()
            atexit.register(cluster.stop)
            _SHARED = cluster
        return _SHARED


def postgres_available() -> bool:
    return (PG_BIN / "initdb").exists()
