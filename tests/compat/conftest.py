"""Fixtures shared by the compatibility suites."""

from __future__ import annotations

import pytest

from tests.compat.workspace import Workspace
from tests.support import Server


@pytest.fixture(scope="module")
def workspace(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp(f"compat-{server.kind}"))
    ws.gates.mkdir()
    return ws
