"""Which store a server runs on: embedded SQLite in the data directory (the
default) or PostgreSQL (`--store postgresql://USER@HOST:PORT/DB`)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from perdure.server.config import Settings
from perdure.server.storage.sqlite import SqliteStorage

if TYPE_CHECKING:
    from perdure.server.storage.postgres import PostgresStorage


def is_postgres_url(store: str) -> bool:
    return store.startswith(("postgresql://", "postgres://"))


def check_store_url(store: str | None) -> None:
    """ValueError with a clear message when `store` is neither empty nor a PostgreSQL URL."""
    if not store:
        return
    if not is_postgres_url(store):
        raise ValueError(f"--store must be a postgresql://USER@HOST:PORT/DB URL, got '{store}'")
    parts = urlsplit(store)
    if not parts.hostname and "host=" not in (parts.query or ""):
        raise ValueError(f"--store needs a host: postgresql://USER@HOST:PORT/DB, got '{store}'")
    if not parts.path.strip("/"):
        raise ValueError(f"--store needs a database name: postgresql://USER@HOST:PORT/DB, got '{store}'")


def make_storage(settings: Settings) -> SqliteStorage | PostgresStorage:
    check_store_url(settings.store)
    if settings.store:
        # Imported here: the PostgreSQL drivers cost a SQLite server ~0.3 s of start-up.
        from perdure.server.storage.postgres import PostgresStorage

        return PostgresStorage(
            settings.store,
            pool_size=settings.store_pool_size,
            lease_ttl_s=settings.lease_ttl_ms / 1000,
            node_name=settings.node_name,
            cluster=settings.node_name is not None,
            address=advertised_address(settings) if settings.node_name is not None else None,
        )
    return SqliteStorage(settings.data_dir)


def advertised_address(settings: Settings) -> str:
    """Where other cluster nodes reach this node's admin API."""
    if settings.advertised_address:
        return settings.advertised_address.rstrip("/")
    host, port = settings.admin
    if host in ("0.0.0.0", "::", ""):
        import socket

        host = socket.gethostname()
    scheme = "https" if settings.admin_tls_cert_file else "http"
    return f"{scheme}://{host}:{port}"


def describe_store(settings: Settings) -> str:
    """Where the data lives, for the start-up log line (no password)."""
    if not settings.store:
        return f"data {settings.data_dir}"
    parts = urlsplit(settings.store)  # no user or password in the log
    hosts = parts.netloc.rpartition("@")[2]  # one host[:port] or several, comma-separated
    return f"store postgresql://{hosts}{parts.path}"
