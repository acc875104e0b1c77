"""`perdure backup DEST` (asks the running server for an online backup through its admin API
and follows it) and `perdure restore SRC --data-dir DIR` (prepares a data directory from a
backup or from the newest snapshot of a snapshot destination; no server involved)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

from perdure.cli_tools.client import AdminClient, Unreachable
from perdure.cli_tools.options import ADMIN_URL_DEFAULT, AdminUrl, JsonOut
from perdure.cli_tools.output import (
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    admin_session,
    fail,
    print_json,
    stderr,
    stdout,
)
from perdure.server.units import format_size

POLL_S = 0.25


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=stderr,
        disable=not enabled,
        transient=True,
    )


def _follow(admin: AdminClient, job: dict[str, Any], show: bool, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    with _progress(show) as bar:
        task: TaskID = bar.add_task("queued", total=None)
        while job["status"] in ("queued", "running"):
            if time.monotonic() > deadline:
                raise fail(f"the backup {job['id']} did not finish within {timeout_s:.0f} s", EXIT_REFUSED)
            time.sleep(POLL_S)
            try:
                job = admin.get(f"/backups/{job['id']}")
            except Unreachable:
                raise fail(
                    f"the server stopped answering during the backup {job['id']}: {job['destination']} is "
                    "incomplete (it has no manifest.json, and `perdure restore` refuses it)",
                    EXIT_UNREACHABLE,
                ) from None
            bar.update(
                task,
                description=job["phase"] or job["status"],
                completed=job["done_bytes"],
                total=job["total_bytes"] or None,
            )
    return job


def backup(
    dest: Annotated[
        str,
        typer.Argument(
            help="Where the server writes the backup: a new or empty directory on the server's machine "
            "(/dir or file:///dir) or s3://bucket/prefix (the server's [worker.snapshots] aws-* settings)."
        ),
    ],
    admin_url: AdminUrl = ADMIN_URL_DEFAULT,
    json_out: JsonOut = False,
    timeout_s: Annotated[
        float, typer.Option("--timeout", help="Give up waiting after this many seconds.")
    ] = 86_400,
) -> None:
    """Take a consistent online backup of the running server's store (invocations keep running).
    It is complete once DEST holds manifest.json; `perdure restore` verifies it."""
    destination = dest if "://" in dest else str(Path(dest).resolve())
    with admin_session(admin_url) as admin:
        job = admin.post("/backups", {"destination": destination})
        job = _follow(admin, job, show=not json_out, timeout_s=timeout_s)
    if json_out:
        print_json(job)
    if job["status"] != "completed":
        raise fail(
            f"the backup failed: {job.get('error')}; {job['destination']} is not a backup", EXIT_REFUSED
        )
    if not json_out:
        m = job["manifest"]
        stdout.print(
            f"backup {job['id']} complete: {job['destination']} ({format_size(m['size_bytes'])}, "
            f"sha256 {m['files'][0]['sha256'][:16]}..., {m['elapsed_ms'] / 1000:.1f} s)",
            highlight=False,
        )


def restore(
    src: Annotated[
        str,
        typer.Argument(
            help="A backup (directory, file:///dir or s3://bucket/prefix), or a snapshot destination: "
            "its newest complete snapshot is restored."
        ),
    ],
    data_dir: Annotated[Path, typer.Option("--data-dir", help="The data directory to prepare.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the store of a non-empty data directory.")
    ] = False,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config-file", "-c", help="Server configuration: its [worker.snapshots] aws-* keys for s3://."
        ),
    ] = None,
    json_out: JsonOut = False,
) -> None:
    """Prepare a data directory from a backup, verifying its manifest and checksum; refuses an
    incomplete or damaged backup, and a non-empty directory unless --force. The server must not
    be running on that directory."""
    from perdure.server.backup.location import parse_location
    from perdure.server.backup.manifest import BackupError
    from perdure.server.backup.restore import restore as restore_into
    from perdure.server.backup.runner import s3_options
    from perdure.server.config_sources import ConfigError, config_file_from_env, load_settings

    try:
        settings = load_settings(config_file or config_file_from_env(os.environ), os.environ, {}).settings
        source = parse_location(src if "://" in src else str(Path(src).resolve()), s3_options(settings))
        with _progress(not json_out) as bar:
            task = bar.add_task("restoring", total=None)
            done = restore_into(
                source,
                data_dir.resolve(),
                force=force,
                progress=lambda n, total: bar.update(task, completed=n, total=total),
            )
    except (BackupError, ConfigError, OSError) as exc:
        raise fail(f"restore refused: {exc}", EXIT_REFUSED) from None
    m = done.manifest
    result = {
        "source": done.source,
        "data_dir": str(done.data_dir),
        "created_at_ms": m.created_at_ms,
        "perdure_version": m.perdure_version,
        "size_bytes": m.size_bytes,
        "sha256": m.files[0].sha256,
    }
    if json_out:
        print_json(result)
        return
    stdout.print(
        f"restored {done.source} into {done.data_dir} ({format_size(m.size_bytes)}, taken "
        f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(m.created_at_ms / 1000))} by Perdure "
        f"{m.perdure_version}); start the server with --data-dir {done.data_dir}",
        highlight=False,
    )
