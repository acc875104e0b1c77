"""The `perdure` command."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Any

import typer

from perdure.cli_tools import install as install_admin_commands
from perdure.cli_tools.dev import dev
from perdure.server.config_sources import ConfigError, config_file_from_env, dump_settings, load_settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Perdure: durable execution, Restate-compatible."
)


@app.callback()
def _root() -> None:
    """Perdure server and tools."""


def _flag(help: str, env: str) -> Any:
    return typer.Option(None, help=f"{help} [env: {env}]", show_default=False)


@app.command()
def server(
    config_file: Path | None = typer.Option(
        None,
        "--config-file",
        "-c",
        help="TOML file with Restate's keys (a restate.toml) and a [perdure] table. [env: RESTATE_CONFIG]",
    ),
    dump_config: bool = typer.Option(
        False, "--dump-config", help="Print the effective configuration as TOML and exit."
    ),
    data_dir: Path | None = _flag("Where the durable state lives.", "PERDURE_DATA_DIR"),
    ingress_address: str | None = _flag("HOST:PORT of the ingress (invocations).", "PERDURE_INGRESS_ADDRESS"),
    admin_address: str | None = _flag("HOST:PORT of the admin API.", "PERDURE_ADMIN_ADDRESS"),
    request_size_max_bytes: str | None = _flag(
        "Largest ingress request body, e.g. 32 MiB (413 above).", "PERDURE_REQUEST_SIZE_MAX_BYTES"
    ),
    query_time_limit_s: float | None = _flag(
        "Longest a /query may run before it is stopped.", "PERDURE_QUERY_TIME_LIMIT_S"
    ),
    query_rows_max: int | None = _flag("Most rows a /query answers.", "PERDURE_QUERY_ROWS_MAX"),
    concurrent_invocations_max: int | None = _flag(
        "Attempts in flight at once.", "PERDURE_CONCURRENT_INVOCATIONS_MAX"
    ),
    log_level: str | None = _flag("debug, info, warning or error.", "PERDURE_LOG_LEVEL"),
    store: str | None = _flag(
        "postgresql://USER@HOST:PORT/DB to keep the durable state in PostgreSQL "
        "(default: embedded SQLite in --data-dir).",
        "PERDURE_STORE",
    ),
    store_pool_size: int | None = _flag(
        "PostgreSQL connections for commits and metadata (8).", "PERDURE_STORE_POOL_SIZE"
    ),
    node_name: str | None = _flag(
        "This node's name in a cluster of nodes sharing the PostgreSQL store.", "PERDURE_NODE_NAME"
    ),
) -> None:
    """Run the Perdure server (embedded SQLite store, or PostgreSQL with --store). Every setting
    also comes from the configuration file (Restate's keys) and from RESTATE_* / PERDURE_*
    variables; precedence flags > environment > file > defaults. `--dump-config` shows them all."""
    flags = {
        "data_dir": None if data_dir is None else str(data_dir),
        "ingress_address": ingress_address,
        "admin_address": admin_address,
        "request_size_max_bytes": request_size_max_bytes,
        "query_time_limit_s": query_time_limit_s,
        "query_rows_max": query_rows_max,
        "concurrent_invocations_max": concurrent_invocations_max,
        "log_level": log_level,
        "store": store,
        "store_pool_size": store_pool_size,
        "node_name": node_name,
    }
    try:
        loaded = load_settings(config_file or config_file_from_env(os.environ), os.environ, flags)
    except ConfigError as exc:
        typer.echo(f"perdure: configuration error: {exc}", err=True)
        raise typer.Exit(2) from None
    settings = loaded.settings
    key_file = settings.request_identity_private_key_pem_file
    if key_file is not None and not dump_config:
        from perdure.server.invoker.identity import IdentityKeyError, RequestSigner

        try:
            RequestSigner.from_pem_file(key_file, settings.request_identity_expiration_ms)
        except IdentityKeyError as exc:
            typer.echo(f"perdure: configuration error: {exc}", err=True)
            raise typer.Exit(2) from None
    if dump_config:
        typer.echo(dump_settings(settings), nl=False)
        return
    logging.basicConfig(
        level=getattr(logging, settings.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    if loaded.ignored:
        logging.getLogger("perdure").info(
            "configuration: ignoring keys Perdure does not use: %s", ", ".join(loaded.ignored)
        )
    from perdure.server.main import serve

    try:
        import uvloop

        uvloop.run(serve(settings))
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        asyncio.run(serve(settings))


install_admin_commands(app)
app.command("dev")(dev)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
