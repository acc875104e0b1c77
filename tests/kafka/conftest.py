"""Fixtures of the Kafka suites: one Tansu broker per module, the official-SDK sinks registered on
the module's server, and a cluster named `local` pointing at the broker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.compat.services.ledger import LEDGER_ENV, Ledger
from tests.kafka.support import Sinks
from tests.support import PythonService, Server, register
from tests.support.fixtures import running_server
from tests.support.kafka import TansuBroker


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TansuBroker]:
    with TansuBroker(tmp_path_factory.mktemp("kafka")) as b:
        yield b


def _sinks(server: Server, broker: TansuBroker, root: Path) -> Iterator[Sinks]:
    ledger = Ledger(root / "ledger.txt")
    with PythonService(
        "tests.kafka.services", "app", env={LEDGER_ENV: str(ledger.path)}, log_dir=root, name="kafka-sinks"
    ) as svc:
        register(server.admin_url, svc.url)
        resp = httpx.post(
            f"{server.admin_url}/kafka-clusters",
            json={"name": "local", "properties": {"bootstrap.servers": broker.bootstrap}},
            timeout=30,
        )
        assert resp.status_code == 201, resp.text
        yield Sinks(server, broker, ledger, svc)


@pytest.fixture(scope="module")
def sinks(server: Server, broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sinks]:
    """The sinks on the parametrized server (both Restate and Perdure)."""
    yield from _sinks(server, broker, tmp_path_factory.mktemp(f"sinks-{server.kind}"))


@pytest.fixture(scope="module")
def perdure_sinks(broker: TansuBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sinks]:
    """The sinks on a Perdure server of the module's own (for Perdure-only behaviour)."""
    with running_server("perdure", tmp_path_factory) as srv:
        yield from _sinks(srv, broker, tmp_path_factory.mktemp("sinks-perdure"))
