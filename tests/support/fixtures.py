"""Pytest fixtures and hooks: a `server` fixture over the selected kinds, log tails on failure.

Import its names into a conftest.py (tests/conftest.py does). Select servers with
PERDURE_TEST_SERVERS=restate (or perdure, or both: the default), or with `-k restate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.process import live_processes
from tests.support.servers import Server, make_server, selected_servers


@contextmanager
def running_server(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A started server of `kind` with a fresh data directory; SIGKILLed on exit.

    For fixtures of your own: `with running_server(str(request.param), tmp_path_factory) as s: yield s`.
    """
    with make_server(kind, tmp_path_factory.mktemp(f"{kind}-server") / "data") as srv:
        yield srv


@pytest.fixture(scope="module", params=selected_servers())
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A started server of the parametrized kind, shared by the tests of one module."""
    with running_server(str(request.param), tmp_path_factory) as srv:
        yield srv


def attach_log_tails(item: pytest.Item, report: pytest.TestReport) -> None:
    """On failure, add the log tail of every live process to the report (printed by pytest)."""
    if not report.failed:
        return
    for proc in live_processes():
        report.sections.append((f"log tail: {proc.name} ({proc.log_path})", proc.log_tail()))


@pytest.fixture(scope="module")
def restate_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real Restate server only (for tests of Perdure's SDK against the reference server)."""
    with running_server("restate", tmp_path_factory) as srv:
        yield srv
