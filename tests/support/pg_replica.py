"""A PostgreSQL 15 primary with one synchronous streaming standby, for the failover and
unknown-commit-outcome tests: two postmasters on free loopback ports, run as the `postgres` user
like `postgres.PostgresCluster`.

The standby is a `pg_basebackup -R` of the primary that streams as application `s1`, and the
primary names it in `synchronous_standby_names`: a commit returns only once the standby has
flushed it, so nothing acknowledged is lost when the primary dies and the standby is promoted.
Clients reach whichever is primary through a two-host URL with `target_session_attrs=read-write`.

    pair = ReplicatedPostgres(); pair.start()
    dsn = pair.create_database()   # postgresql://postgres@127.0.0.1:P1,127.0.0.1:P2/db?target_session_attrs=read-write
    pair.kill_primary()            # SIGKILL the postmaster and every backend (a crashed host)
    pair.promote()                 # pg_ctl promote the standby
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import time

import psutil

from tests.support.postgres import PG_BIN, PG_USER, START_TIMEOUT_S, PostgresCluster, _as_db_user

STANDBY_NAME = "s1"
_PRIMARY_OPTIONS = "-c wal_level=replica -c max_wal_senders=4 -c wal_sender_timeout=10s"


class ReplicatedPostgres:
    def __init__(self) -> None:
        self.primary = PostgresCluster(_PRIMARY_OPTIONS)
        self.standby = PostgresCluster("-c hot_standby=on -c wal_receiver_status_interval=1s")
        self.promoted = False
        self._names = itertools.count(1)

    def start(self) -> None:
        self.primary.start()
        self.primary.psql("SELECT 1")  # ready
        subprocess.run(
            [
                *_as_db_user(),
                str(PG_BIN / "pg_basebackup"),
                "-D",
                str(self.standby.data),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.primary.port),
                "-U",
                PG_USER,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S,
        )
        conninfo = f"host=127.0.0.1 port={self.primary.port} user={PG_USER} application_name={STANDBY_NAME}"
        with (self.standby.data / "postgresql.auto.conf").open("a") as conf:
            conf.write(f"primary_conninfo = '{conninfo}'\n")
        self.standby.launch()
        # Set after the base backup (in the primary's postgresql.auto.conf, so ALTER SYSTEM can
        # change it): once promoted, the standby has no standby of its own to wait for.
        self.synchronous_standbys(STANDBY_NAME)
        self.wait_synchronous()

    def synchronous_standbys(self, names: str) -> None:
        """Set the primary's synchronous_standby_names (a name nobody has makes every commit wait)."""
        self.current().psql(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
        self.current().psql("SELECT pg_reload_conf()")

    def walreceiver_pid(self) -> int:
        """The standby's WAL receiver (SIGSTOP it and the primary's commits wait for the standby)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not (pid := self.standby.psql("SELECT pid FROM pg_stat_wal_receiver")):
            assert time.monotonic() < deadline, "the standby has no WAL receiver"
            time.sleep(0.1)
        return int(pid)

    def wait_synchronous(self) -> None:
        """Until the primary sees the standby streaming as its synchronous standby."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while (
            self.primary.psql(
                f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{STANDBY_NAME}'"
            )
            != "sync"
        ):
            assert time.monotonic() < deadline, "the standby never became synchronous"
            time.sleep(0.1)

    def dsn(self, database: str = "postgres") -> str:
        hosts = f"127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}"
        return f"postgresql://{PG_USER}@{hosts}/{database}?target_session_attrs=read-write"

    def create_database(self, prefix: str = "perdure") -> str:
        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        self.current().psql(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def current(self) -> PostgresCluster:
        return self.standby if self.promoted else self.primary

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and all its processes at once (a crashed host)."""
        root = psutil.Process(self.primary.postmaster_pid())
        procs = [root, *root.children(recursive=True)]
        for proc in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(procs, timeout=START_TIMEOUT_S)
        self.primary._started = False  # nothing left to stop

    def promote(self) -> None:
        subprocess.run(
            [*_as_db_user(), str(PG_BIN / "pg_ctl"), "-D", str(self.standby.data), "-w", "promote"],
            check=True,
            capture_output=True,
            timeout=START_TIMEOUT_S,
        )
        self.promoted = True

    def stop(self) -> None:
        self.standby.stop()
        self.primary.stop()
        shutil.rmtree(self.primary.dir, ignore_errors=True)
