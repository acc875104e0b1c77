"""`perdure sql "..."` and `perdure state SERVICE KEY`: SQL over the live runtime state."""

from __future__ import annotations

from typing import Annotated

import typer

from perdure.cli_tools.client import sql_string
from perdure.cli_tools.options import ADMIN_URL_DEFAULT, AdminUrl, JsonOut
from perdure.cli_tools.output import admin_session, print_json, print_table, stdout


def sql(
    query: Annotated[str, typer.Argument(help='SQL, e.g. "SELECT id, status FROM sys_invocation"')],
    admin_url: AdminUrl = ADMIN_URL_DEFAULT,
    json_out: JsonOut = False,
) -> None:
    """Run a SQL query over the runtime's tables (sys_invocation, sys_journal, state, ...)."""
    with admin_session(admin_url) as admin:
        rows = admin.query(query)
    if json_out:
        print_json(rows)
        return
    print_table(rows)
    stdout.print(f"{len(rows)} row{'s' if len(rows) != 1 else ''}", style="dim")


def state(
    service: Annotated[str, typer.Argument(help="Virtual object or workflow name.")],
    key: Annotated[str, typer.Argument(help="The object or workflow key.")],
    admin_url: AdminUrl = ADMIN_URL_DEFAULT,
    json_out: JsonOut = False,
) -> None:
    """The state stored under one key; values show as text when they are UTF-8, else as hex.
    With --json: the rows `{"key", "value_utf8" (absent when not UTF-8), "value" (hex)}`."""
    query = (
        "SELECT key, value_utf8, value FROM state "
        f"WHERE service_name = {sql_string(service)} AND service_key = {sql_string(key)} ORDER BY key"
    )
    with admin_session(admin_url) as admin:
        rows = admin.query(query)
    if json_out:
        print_json(rows)
        return
    shown = [{"key": r["key"], "value": r.get("value_utf8", f"0x{r.get('value', '')}")} for r in rows]
    print_table(shown, ["key", "value"], title=f"{service}/{key}")
