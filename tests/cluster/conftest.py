import pytest

from tests.support.postgres import postgres_available

collect_ignore: list[str] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if postgres_available():
        return
    skip = pytest.mark.skip(reason="the cluster tests need PostgreSQL 15 (apt install postgresql-15)")
    for item in items:
        if item.path.parent.name == "cluster":
            item.add_marker(skip)
