"""Options shared by every `perdure` admin command."""

from __future__ import annotations

from typing import Annotated

import typer

from perdure.cli_tools.client import DEFAULT_ADMIN_URL

AdminUrl = Annotated[
    str,
    typer.Option(
        "--admin-url", envvar="PERDURE_ADMIN_URL", help="Base URL of the admin API (Perdure or Restate)."
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of a table.")]

ADMIN_URL_DEFAULT = DEFAULT_ADMIN_URL
