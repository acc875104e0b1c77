"""`perdure deployments register|list` and `perdure services`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from perdure.cli_tools.options import ADMIN_URL_DEFAULT, AdminUrl, JsonOut
from perdure.cli_tools.output import admin_session, print_json, print_table, stdout

deployments_app = typer.Typer(no_args_is_help=True, help="Register and list service deployments.")


@deployments_app.command("register")
def register(
    url: Annotated[str, typer.Argument(help="Base URL of the service endpoint, e.g. http://127.0.0.1:9080")],
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the services of an existing deployment at this URL.")
    ] = False,
    admin_url: AdminUrl = ADMIN_URL_DEFAULT,
    json_out: JsonOut = False,
) -> None:
    """Discover the services at URL and register them."""
    with admin_session(admin_url) as admin:
        answer = admin.post("/deployments", {"uri": url, "force": force})
    if json_out:
        print_json(answer)
        return
    services = ", ".join(f"{s['name']} (rev {s.get('revision', '?')})" for s in answer.get("services", []))
    stdout.print(
        f"Registered [bold]{answer['id']}[/bold] at {url}: {services or 'no services'}", highlight=False
    )


def _service_names(deployment: dict[str, Any]) -> str:
    return ", ".join(f"{s['name']}@{s.get('revision', '?')}" for s in deployment.get("services", []))


@deployments_app.command("list")
def list_deployments(admin_url: AdminUrl = ADMIN_URL_DEFAULT, json_out: JsonOut = False) -> None:
    """Every registered deployment and the services it serves."""
    with admin_session(admin_url) as admin:
        deployments = admin.get("/deployments")["deployments"]
    if json_out:
        print_json(deployments)
        return
    rows = [
        {
            "id": d["id"],
            "endpoint": d.get("uri") or d.get("arn", ""),
            "protocol": d.get("protocol_type", ""),
            "sdk": d.get("sdk_version", ""),
            "created_at": d.get("created_at", ""),
            "services": _service_names(d),
        }
        for d in deployments
    ]
    print_table(rows, ["id", "endpoint", "protocol", "sdk", "created_at", "services"])


def services(admin_url: AdminUrl = ADMIN_URL_DEFAULT, json_out: JsonOut = False) -> None:
    """Every registered service: type, revision, deployment and handlers."""
    with admin_session(admin_url) as admin:
        found = admin.get("/services")["services"]
    if json_out:
        print_json(found)
        return
    rows = [
        {
            "name": s["name"],
            "type": s.get("ty", ""),
            "revision": s.get("revision", ""),
            "deployment": s.get("deployment_id", ""),
            "handlers": ", ".join(sorted(h["name"] for h in s.get("handlers", []))),
        }
        for s in sorted(found, key=lambda s: str(s["name"]))
    ]
    print_table(rows, ["name", "type", "revision", "deployment", "handlers"])
