"""The `perdure` command."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer

from perdure.cli_tools import install as install_admin_commands
from perdure.cli_tools.dev import dev
from perdure.server.config import Settings

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Perdure: durable execution, Restate-compatible."
)


@app.callback()
def _root() -> None:
    """Perdure server and tools."""


@app.command()
def server(
    data_dir: Path = typer.Option(
        Path("perdure-data"), envvar="PERDURE_DATA_DIR", help="Where the durable state lives."
    ),
    ingress_address: str = typer.Option(
        "127.0.0.1:8080", envvar="PERDURE_INGRESS_ADDRESS", help="HOST:PORT of the ingress (invocations)."
    ),
    admin_address: str = typer.Option(
        "127.0.0.1:9070", envvar="PERDURE_ADMIN_ADDRESS", help="HOST:PORT of the admin API."
    ),
    request_size_max_bytes: int = typer.Option(
        32 * 1024 * 1024,
        envvar="PERDURE_REQUEST_SIZE_MAX_BYTES",
        help="Largest ingress request body (413 above).",
    ),
    query_time_limit_s: float = typer.Option(
        10.0, envvar="PERDURE_QUERY_TIME_LIMIT_S", help="Longest a /query may run before it is stopped."
    ),
    query_rows_max: int = typer.Option(
        100_000, envvar="PERDURE_QUERY_ROWS_MAX", help="Most rows a /query answers."
    ),
    concurrent_invocations_max: int = typer.Option(
        1_000, envvar="PERDURE_CONCURRENT_INVOCATIONS_MAX", help="Attempts in flight at once."
    ),
    log_level: str = typer.Option("info", envvar="PERDURE_LOG_LEVEL", help="debug, info, warning or error."),
) -> None:
    """Run the Perdure server (embedded SQLite store)."""
    settings = Settings(
        data_dir=data_dir,
        ingress_address=ingress_address,
        admin_address=admin_address,
        request_size_max_bytes=request_size_max_bytes,
        query_time_limit_s=query_time_limit_s,
        query_rows_max=query_rows_max,
        concurrent_invocations_max=concurrent_invocations_max,
        log_level=log_level,
    )
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
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
