"""One primary + synchronous standby pair shared by the tests that leave it as they found it
(the failover test, which promotes the standby, starts its own)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.pg_replica import ReplicatedPostgres
from tests.support.postgres import postgres_available


@pytest.fixture(scope="package")
def pair() -> Iterator[ReplicatedPostgres]:
    if not postgres_available():
        pytest.skip("PostgreSQL 15 is not installed")
    replicated = ReplicatedPostgres()
    replicated.start()
    yield replicated
    replicated.stop()
