"""`perdure schedules list|set|pause|resume|delete` over the admin API's `/schedules`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from perdure.cli_tools.options import ADMIN_URL_DEFAULT, AdminUrl, JsonOut
from perdure.cli_tools.output import admin_session, fail, print_json, print_table, stdout

schedules_app = typer.Typer(no_args_is_help=True, help="Cron and interval schedules that invoke a handler.")

USAGE_EXIT = 2


def _when(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def _show(s: dict[str, Any], json_out: bool) -> None:
    if json_out:
        print_json(s)
        return
    state = "paused" if s["paused"] else f"next {_when(s['next_ms'])}"
    stdout.print(f"[bold]{s['name']}[/bold] -> {s['target']}: {state}", highlight=False)


@schedules_app.command("list")
def list_schedules(admin_url: AdminUrl = ADMIN_URL_DEFAULT, json_out: JsonOut = False) -> None:
    """Every schedule with its next run."""
    with admin_session(admin_url) as admin:
        schedules = admin.get("/schedules")["schedules"]
    if json_out:
        print_json(schedules)
        return
    rows = [
        {
            "name": s["name"],
            "target": s["target"],
            "when": s["cron"] or f"every {s['every_ms']} ms",
            "timezone": s["timezone"],
            "overlap": s["overlap"],
            "paused": "yes" if s["paused"] else "no",
            "next_run": _when(s["next_ms"]),
            "fired": s["fired"],
            "skipped": s["skipped"],
        }
        for s in schedules
    ]
    print_table(
        rows, ["name", "target", "when", "timezone", "overlap", "paused", "next_run", "fired", "skipped"]
    )


@schedules_app.command("set")
def set_schedule(
    name: Annotated[str, typer.Argument(help="Schedule name ([a-zA-Z0-9_.-]).")],
    target: Annotated[str, typer.Argument(help="Service/handler or Object/key/handler.")],
    cron: Annotated[str | None, typer.Option(help="Cron expression, e.g. '*/5 * * * *'.")] = None,
    every: Annotated[str | None, typer.Option(help="Interval, e.g. 30s, 5m, 1h.")] = None,
    body: Annotated[str, typer.Option(help="JSON body every tick sends.")] = "null",
    timezone: Annotated[str, typer.Option(help="Time zone of the cron expression.")] = "UTC",
    overlap: Annotated[str, typer.Option(help="skip | buffer_one | allow")] = "allow",
    catch_up_max: Annotated[int, typer.Option(help="Missed ticks run after downtime (latest first).")] = 1,
    paused: Annotated[bool, typer.Option("--paused", help="Create it paused.")] = False,
    admin_url: AdminUrl = ADMIN_URL_DEFAULT,
    json_out: JsonOut = False,
) -> None:
    """Create or replace a schedule."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise fail(f"--body is not JSON: {exc}", USAGE_EXIT) from None
    spec: dict[str, Any] = {
        "target": target,
        "body": payload,
        "timezone": timezone,
        "overlap": overlap,
        "catch_up_max": catch_up_max,
        "paused": paused,
    }
    if cron is not None:
        spec["cron"] = cron
    if every is not None:
        spec["every"] = every
    with admin_session(admin_url) as admin:
        answer = admin.request("PUT", f"/schedules/{name}", spec).json()
    _show(answer, json_out)


def _verb(name: str, verb: str, admin_url: str, json_out: bool) -> None:
    with admin_session(admin_url) as admin:
        answer = admin.request("PATCH", f"/schedules/{name}/{verb}").json()
    _show(answer, json_out)


@schedules_app.command("pause")
def pause(name: str, admin_url: AdminUrl = ADMIN_URL_DEFAULT, json_out: JsonOut = False) -> None:
    """Stop a schedule's ticks (missed ones are not caught up on resume)."""
    _verb(name, "pause", admin_url, json_out)


@schedules_app.command("resume")
def resume(name: str, admin_url: AdminUrl = ADMIN_URL_DEFAULT, json_out: JsonOut = False) -> None:
    """Tick again, from the next tick after now."""
    _verb(name, "resume", admin_url, json_out)


@schedules_app.command("delete")
def delete(name: str, admin_url: AdminUrl = ADMIN_URL_DEFAULT) -> None:
    """Remove a schedule (invocations it started go on)."""
    with admin_session(admin_url) as admin:
        admin.request("DELETE", f"/schedules/{name}")
    stdout.print(f"Deleted schedule {name}", highlight=False)
