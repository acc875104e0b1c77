"""Which suites run on Perdure over PostgreSQL (`perdure-pg`) by default.

Every suite parametrized over `selected_servers()` can run on perdure-pg; running all of them
there as well would add minutes to CI (about 3 minutes per suite set of four modules on this
machine), so by default only a representative set does (the core scenarios, and introspection,
which exercises the PostgreSQL query engine) and the others run on perdure-pg with
PERDURE_PG_SUITES=all (all of them passed on it when this set was chosen). The SQL dialect
(the official CLI's queries) and traces suites run on perdure-pg by default too: they cost about
30 s there together, and both found PostgreSQL-only bugs. The store itself is tested on
PostgreSQL in full by tests/integration/test_postgres_store.py and tests/pg/."""

from __future__ import annotations

import os

import pytest

PG_KIND = "perdure-pg"
PG_SUITES_ENV = "PERDURE_PG_SUITES"
DEFAULT_PG_MODULES = frozenset(
    {"test_core.py", "test_introspection.py", "test_sql_dialect.py", "test_traces.py"}
)


def _on_pg(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    # Any fixture parametrized over `selected_servers()` (the shared `server` fixture or a
    # module's own) in the scenario suites; integration tests, which choose their stores on
    # purpose, and tests that start perdure-pg by name (no parameter) always run.
    if callspec is None or item.path.parent.name == "integration":
        return False
    return PG_KIND in callspec.params.values()


def deselect_pg_items(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Drop perdure-pg items outside the default modules unless PERDURE_PG_SUITES=all."""
    if os.environ.get(PG_SUITES_ENV, "") == "all":
        return
    keep, drop = [], []
    for item in items:
        (drop if _on_pg(item) and item.path.name not in DEFAULT_PG_MODULES else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
