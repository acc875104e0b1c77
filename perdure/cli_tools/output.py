"""How the `perdure` CLI prints: Rich tables for people, JSON for scripts,
errors on stderr, and exit codes scripts can rely on."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from perdure.cli_tools.client import AdminClient, AdminError, Unreachable

EXIT_OK = 0
EXIT_REFUSED = 1  # the server answered with an error (bad SQL, conflict, invalid request)
EXIT_USAGE = 2  # bad command line (Typer/Click)
EXIT_UNREACHABLE = 3  # no answer from the admin API
EXIT_NOT_FOUND = 4  # the deployment, service or invocation does not exist

stdout = Console(soft_wrap=False)
stderr = Console(stderr=True, soft_wrap=True)


def print_json(data: Any) -> None:
    typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Column names in order of first appearance (JSON rows leave out NULL columns)."""
    seen: dict[str, None] = {}
    for row in rows:
        for name in row:
            seen.setdefault(name, None)
    return list(seen)


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return orjson.dumps(value).decode()
    return str(value)


def print_table(
    rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None, title: str | None = None
) -> None:
    names = list(columns) if columns is not None else columns_of(rows)
    table = Table(title=title, show_edge=False, header_style="bold")
    for name in names:
        table.add_column(name.upper(), overflow="fold")
    for row in rows:
        table.add_row(*(cell(row.get(name)) for name in names))
    stdout.print(table)


def fail(message: str, code: int) -> typer.Exit:
    """Print `message` on stderr; `raise fail(...)` ends the command with `code`."""
    stderr.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


@contextmanager
def admin_session(admin_url: str) -> Iterator[AdminClient]:
    """An admin client whose errors end the command with the matching exit code."""
    try:
        with AdminClient(admin_url) as client:
            yield client
    except Unreachable as exc:
        raise fail(str(exc), EXIT_UNREACHABLE) from None
    except AdminError as exc:
        code = EXIT_NOT_FOUND if exc.status == 404 else EXIT_REFUSED
        raise fail(f"{exc.message} (HTTP {exc.status})", code) from None
