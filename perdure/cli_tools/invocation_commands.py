"""`perdure invocations`, `perdure invocation ID` (its journal as a timeline)
and `perdure cancel|kill|purge ID`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from perdure.cli_tools.client import sql_string
from perdure.cli_tools.options import ADMIN_URL_DEFAULT, AdminUrl, JsonOut
from perdure.cli_tools.output import (
    EXIT_NOT_FOUND,
    EXIT_USAGE,
    admin_session,
    cell,
    fail,
    print_json,
    print_table,
    stdout,
)
from perdure.protocol.ids import IdError, InvocationId

STATUSES = ("pending", "scheduled", "ready", "running", "backing-off", "suspended", "paused", "completed")
LIST_COLUMNS = ("id", "target", "status", "created_at", "modified_at", "retry_count", "next_retry_at")
DESCRIBE_COLUMNS = (
    "id, target, status, created_at, modified_at, invoked_by, invoked_by_id, idempotency_key, "
    "pinned_deployment_id, retry_count, last_start_at, next_retry_at, last_failure, "
    "last_failure_related_command_name, completion_result, completion_failure, completed_at, "
    "journal_size, suspended_waiting_for_completions, suspended_waiting_for_signals"
)
JOURNAL_COLUMNS = (
    "index, entry_type, name, completed, invoked_id, invoked_target, sleep_wakeup_at, promise_name, "
    "appended_at"
)
JOURNAL_ENTRIES_MAX = 1000


def _checked_id(text: str) -> str:
    try:
        InvocationId.parse(text)
    except IdError as exc:
        raise fail(f"'{text}' is not an invocation id: {exc}", EXIT_USAGE) from None
    return text


def invocations(
    status: Annotated[
        list[str] | None,
        typer.Option("--status", "-s", help=f"Only these statuses (repeatable): {', '.join(STATUSES)}."),
    ] = None,
    include_completed: Annotated[bool, typer.Option("--all", help="Include completed invocations.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most this many.")] = 100,
    admin_url: AdminUrl = ADMIN_URL_DEFAULT,
    json_out: JsonOut = False,
) -> None:
    """Invocations, newest first (not completed ones unless --all or --status completed)."""
    unknown = sorted(set(status or ()) - set(STATUSES))
    if unknown:
        raise fail(f"unknown status {', '.join(unknown)}; expected one of {', '.join(STATUSES)}", EXIT_USAGE)
    if status:
        where = f"WHERE status IN ({', '.join(sql_string(s) for s in status)})"
    else:
        where = "" if include_completed else "WHERE status != 'completed'"
    columns = ", ".join(LIST_COLUMNS)
    query = f"SELECT {columns} FROM sys_invocation {where} ORDER BY created_at DESC, id LIMIT {limit}"
    with admin_session(admin_url) as admin:
        rows = admin.query(query)
    if json_out:
        print_json(rows)
        return
    print_table(rows, LIST_COLUMNS)
    stdout.print(f"{len(rows)} invocation{'s' if len(rows) != 1 else ''}", style="dim")


def _detail(entry: dict[str, Any]) -> str:
    parts = []
    if "invoked_target" in entry:
        parts.append(
            f"→ {entry['invoked_target']}" + (f" ({entry['invoked_id']})" if "invoked_id" in entry else "")
        )
    if "sleep_wakeup_at" in entry:
        parts.append(f"until {entry['sleep_wakeup_at']}")
    if "promise_name" in entry:
        parts.append(f"promise {entry['promise_name']}")
    if "completed" in entry:
        parts.append("completed" if entry["completed"] else "waiting")
    return ", ".join(parts)


def _print_invocation(info: dict[str, Any], journal: list[dict[str, Any]]) -> None:
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column()
    for name in [c.strip() for c in DESCRIBE_COLUMNS.split(",")]:
        if name in info:
            summary.add_row(name.replace("_", " "), cell(info[name]))
    stdout.print(summary)
    stdout.print()
    rows = [
        {
            "#": e.get("index"),
            "at": e.get("appended_at", ""),
            "entry": e.get("entry_type", ""),
            "name": e.get("name", ""),
            "detail": _detail(e),
        }
        for e in journal
    ]
    print_table(rows, ["#", "at", "entry", "name", "detail"], title="Journal")


def invocation(
    invocation_id: Annotated[str, typer.Argument(help="The invocation id (inv_1...).")],
    admin_url: AdminUrl = ADMIN_URL_DEFAULT,
    json_out: JsonOut = False,
) -> None:
    """One invocation: its status, last failure, and its journal as a timeline."""
    ident = sql_string(_checked_id(invocation_id))
    with admin_session(admin_url) as admin:
        found = admin.query(f"SELECT {DESCRIBE_COLUMNS} FROM sys_invocation WHERE id = {ident}")
        if not found:
            raise fail(f"no invocation {invocation_id}", EXIT_NOT_FOUND)
        journal = admin.query(
            f"SELECT {JOURNAL_COLUMNS} FROM sys_journal WHERE id = {ident} "
            f"ORDER BY index LIMIT {JOURNAL_ENTRIES_MAX}"
        )
    if json_out:
        print_json({"invocation": found[0], "journal": journal})
        return
    _print_invocation(found[0], journal)


def _terminate(action: str, past: str, invocation_id: str, admin_url: str, json_out: bool) -> None:
    ident = _checked_id(invocation_id)
    with admin_session(admin_url) as admin:
        status = admin.patch(f"/invocations/{ident}/{action}")
    if json_out:
        print_json({"id": ident, "action": action, "status": status})
    else:
        stdout.print(f"{past} {ident}", highlight=False)


IdArg = Annotated[str, typer.Argument(help="The invocation id (inv_1...).")]


def cancel(invocation_id: IdArg, admin_url: AdminUrl = ADMIN_URL_DEFAULT, json_out: JsonOut = False) -> None:
    """Cancel an invocation: the handler sees a cancellation and can run compensations."""
    _terminate("cancel", "Cancellation requested for", invocation_id, admin_url, json_out)


def kill(invocation_id: IdArg, admin_url: AdminUrl = ADMIN_URL_DEFAULT, json_out: JsonOut = False) -> None:
    """Kill an invocation at once, without running any more of its code."""
    _terminate("kill", "Killed", invocation_id, admin_url, json_out)


def purge(invocation_id: IdArg, admin_url: AdminUrl = ADMIN_URL_DEFAULT, json_out: JsonOut = False) -> None:
    """Delete a completed invocation: its journal, output and idempotency record."""
    _terminate("purge", "Purged", invocation_id, admin_url, json_out)
