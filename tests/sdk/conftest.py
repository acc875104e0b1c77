"""Module-scoped fixtures of the SDK suite: a server, and the SDK under test (perdure, official)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.sdk.harness import sdk_servers
from tests.sdk.services.sdk import SDKS
from tests.support import Server, make_server


@pytest.fixture(scope="module", params=sdk_servers())
def sdk_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    kind = str(request.param)
    srv = make_server(kind, tmp_path_factory.mktemp(f"{kind}-server") / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture(scope="module", params=SDKS)
def sdk(request: pytest.FixtureRequest) -> str:
    return str(request.param)
