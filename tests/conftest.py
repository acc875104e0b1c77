"""Shared pytest setup: make `tests.support` importable and register its fixtures and hooks."""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path

import pytest

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.support.fixtures import attach_log_tails, restate_server, server  # noqa: E402
from tests.support.pg_suites import deselect_pg_items  # noqa: E402

__all__ = ["restate_server", "server"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    attach_log_tails(item, report)
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselect_pg_items(config, items)
