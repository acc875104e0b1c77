"""The `perdure` CLI's admin commands (everything but `perdure server`):
deployments, services, invocations, SQL and state, the cluster, backup and restore, against the admin API of
Perdure or Restate (`--admin-url`, env PERDURE_ADMIN_URL, default
http://127.0.0.1:9070). Tables for people, `--json` for scripts; exit codes
are in `perdure.cli_tools.output` (0 ok, 1 refused, 2 usage, 3 unreachable,
4 not found)."""

from __future__ import annotations

import typer

from perdure.cli_tools.backup_commands import backup, restore
from perdure.cli_tools.cluster_commands import cluster
from perdure.cli_tools.invocation_commands import cancel, invocation, invocations, kill, purge
from perdure.cli_tools.registry_commands import deployments_app, services
from perdure.cli_tools.schedule_commands import schedules_app
from perdure.cli_tools.sql_commands import sql, state


def install(app: typer.Typer) -> None:
    """Add the admin commands to the `perdure` Typer app."""
    app.add_typer(deployments_app, name="deployments")
    app.add_typer(schedules_app, name="schedules")
    for fn in (services, invocations, invocation, sql, state, cancel, kill, purge, cluster, backup, restore):
        app.command(fn.__name__)(fn)
