"""Wires the server together and owns every long-lived task: the processor
loop, the timer service, the invoker's attempts and the two HTTP servers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from starlette.routing import BaseRoute

from perdure.server import collector
from perdure.server.admin.app import create_admin_app
from perdure.server.admin.backups import backup_routes
from perdure.server.admin.cluster import cluster_routes, sqlite_status
from perdure.server.admin.journal import journal_routes
from perdure.server.admin.query import query_routes
from perdure.server.admin.state import state_routes
from perdure.server.admin.ui import ui_routes
from perdure.server.auth import admin_body, ingress_body, protect
from perdure.server.backup.runner import BackupRunner, backup_pace, s3_options, snapshot_policy
from perdure.server.config import VERSION, Settings
from perdure.server.ingress.app import Ingress
from perdure.server.ingress.coalesce import IngressHttpProtocol
from perdure.server.invoker.h1client import H1Client
from perdure.server.invoker.h2client import H2Client
from perdure.server.invoker.invoker import Invoker
from perdure.server.kafka.admin import kafka_routes
from perdure.server.kafka.catalog import KafkaCatalog, static_clusters
from perdure.server.kafka.ingestion import Ingestion, IngestionLimits
from perdure.server.processor.commands import ReplaceState
from perdure.server.processor.core import ProcessorConfig
from perdure.server.processor.locality import Locality
from perdure.server.processor.processor import Processor
from perdure.server.progress import log_recovery, process_age_s
from perdure.server.query.catalog import CatalogSource, registry_catalog, with_subscription_lag
from perdure.server.query.engine import LiveAttempts, QueryEngine, QueryLimits
from perdure.server.query.live import live_attempts_of
from perdure.server.registry import Registry, ServiceDefaults
from perdure.server.runtime import Runtime
from perdure.server.storage.factory import describe_store, make_storage
from perdure.server.storage.sqlite import SqliteStorage
from perdure.server.telemetry.hub import Telemetry

if TYPE_CHECKING:  # signing pulls in cryptography and PyJWT; imported only when configured
    from perdure.server.cluster.node import ClusterNode
    from perdure.server.cluster.router import ClusterRouter
    from perdure.server.invoker.identity import RequestSigner
    from perdure.server.query.pg_engine import PgQueryEngine  # PostgreSQL drivers: only with --store
    from perdure.server.storage.postgres import PostgresStorage

log = logging.getLogger("perdure")


def _signer(settings: Settings) -> RequestSigner | None:
    path = settings.request_identity_private_key_pem_file
    if path is None:
        return None
    from perdure.server.invoker.identity import RequestSigner

    signer = RequestSigner.from_pem_file(path, settings.request_identity_expiration_ms)
    log.info("requests to services are signed; their public key: %s", signer.key_id)
    return signer


def _tls(cert: Path | None, key: Path | None) -> tuple[Path, Path] | None:
    return None if cert is None or key is None else (cert, key)


def service_defaults(settings: Settings) -> ServiceDefaults:
    """What services and handlers get when neither their manifest nor a PATCH sets a value."""
    return ServiceDefaults(
        idempotency_retention_ms=settings.idempotency_retention_ms,
        workflow_completion_retention_ms=settings.workflow_completion_retention_ms,
        journal_retention_ms=settings.journal_retention_ms,
        inactivity_timeout_ms=settings.inactivity_timeout_ms,
        abort_timeout_ms=settings.abort_timeout_ms,
        retry_initial_interval_ms=settings.retry_initial_interval_ms,
        retry_exponentiation_factor=settings.retry_exponentiation_factor,
        retry_max_attempts=settings.retry_max_attempts,
        retry_max_interval_ms=settings.retry_max_interval_ms,
        retry_on_max_attempts=settings.retry_on_max_attempts.upper(),
    )


class _QuietServer(uvicorn.Server):
    """uvicorn server that leaves signal handling to us."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _http_server(
    app: object,
    host: str,
    port: int,
    tls: tuple[Path, Path] | None = None,
    protocol: type[asyncio.Protocol] | None = None,
) -> _QuietServer:
    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        http=protocol or "httptools",
        loop="none",
        lifespan="off",
        access_log=False,
        log_level="warning",
        timeout_keep_alive=75,
        ssl_certfile=None if tls is None else str(tls[0]),
        ssl_keyfile=None if tls is None else str(tls[1]),
    )
    return _QuietServer(config)


def make_query_engine(
    storage: SqliteStorage | PostgresStorage,
    *,
    live_attempts: LiveAttempts,
    catalog: CatalogSource,
    limits: QueryLimits,
) -> QueryEngine | PgQueryEngine:
    """Introspection over the store the server runs on."""
    if isinstance(storage, SqliteStorage):
        return QueryEngine(storage.path, live_attempts=live_attempts, catalog=catalog, limits=limits)
    from perdure.server.query.pg_engine import PgQueryEngine

    return PgQueryEngine(storage.dsn, live_attempts=live_attempts, catalog=catalog, limits=limits)


def _telemetry(settings: Settings) -> Telemetry | None:
    """Metrics unless disabled, traces when an endpoint is configured; None when nothing is
    enabled (the hot paths then skip it). Each library is imported only when used."""
    metrics = tracing = None
    if not settings.disable_prometheus:
        from perdure.server.telemetry.metrics import Metrics

        metrics = Metrics()
        metrics.concurrency_limit(settings.concurrent_invocations_max)
    if settings.tracing_endpoint or any(k.startswith("OTEL_EXPORTER_OTLP_") for k in os.environ):
        from perdure.server.telemetry.tracing import Tracing, exporter_for

        exporter = exporter_for(settings.tracing_endpoint)
        if exporter is not None:
            tracing = Tracing(exporter)
    if metrics is None and tracing is None:
        return None
    return Telemetry(metrics=metrics, tracing=tracing)


def _metrics_routes(
    telemetry: Telemetry | None, engine: QueryEngine | PgQueryEngine, runtime: Runtime
) -> list[BaseRoute]:
    if telemetry is None or telemetry.metrics is None:
        return []
    from perdure.server.admin.metrics import metrics_routes

    telemetry.metrics.limits_from(runtime.limit_usage)
    return metrics_routes(telemetry.metrics, engine)


async def _keep_leases(storage: PostgresStorage, settings: Settings) -> None:
    """Renew the store's partition leases; when one is lost, return (the server stops:
    single node, it owns every partition or none)."""
    from perdure.server.storage.postgres import LeaseLost

    try:
        await storage.keep_leases(settings.lease_renew_ms / 1000)
    except LeaseLost as exc:
        log.error("%s; this node stops", exc)


def _cluster(
    storage: SqliteStorage | PostgresStorage, runtime: Runtime, registry: Registry, settings: Settings
) -> tuple[ClusterNode, ClusterRouter] | None:
    """A node of a cluster (PostgreSQL with --node-name): its lease keeper and request router."""
    if isinstance(storage, SqliteStorage) or not storage.cluster:
        return None
    from perdure.server.cluster.node import ClusterNode
    from perdure.server.cluster.router import ClusterRouter

    node = ClusterNode(storage, runtime, renew_s=settings.lease_renew_ms / 1000, refresh=registry.refresh)
    router = ClusterRouter(node, Locality(storage.partition_bits), token=settings.admin_token)
    runtime.partitions = storage
    runtime.router = router
    return node, router


def cluster_forward_routes(runtime: Runtime) -> list[BaseRoute]:
    from perdure.server.cluster.router import forward_routes

    return forward_routes(runtime)


async def serve(settings: Settings) -> None:
    t0 = time.monotonic()
    storage = make_storage(settings)
    await storage.open()
    signer = _signer(settings)
    registry = await Registry.load(storage, service_defaults(settings))
    client = H2Client(connect_timeout_s=settings.connect_timeout_ms / 1000)
    h1_client = H1Client(connect_timeout_s=settings.connect_timeout_ms / 1000)
    telemetry = _telemetry(settings)
    kafka = await KafkaCatalog.load(storage, registry, static_clusters(settings.kafka_clusters))
    runtime_box: list[Runtime] = []
    invoker = Invoker(
        registry,
        client,
        lambda cmd: runtime_box[0].submit(cmd),
        message_size_max=settings.message_size_max_bytes,
        concurrency_max=settings.concurrent_invocations_max,
        parked_max=settings.attempts_parked_max,
        park_idle_s=settings.attempt_park_idle_ms / 1000,
        other_attempts_max=settings.concurrent_invocations_max * settings.other_attempts_percent // 100,
        h1_opener=h1_client,
        additional_headers=settings.additional_request_headers,
        signer=signer,
        telemetry=telemetry,
    )
    processor_config = ProcessorConfig(eager_state_size_max=settings.eager_state_size_max_bytes)

    def make_processor() -> Processor:
        if isinstance(storage, SqliteStorage):
            return Processor(storage, registry, processor_config)
        # On PostgreSQL the processor covers the partitions whose leases the node holds now.
        locality = Locality(storage.partition_bits, storage.owned_partitions())
        return Processor(storage, registry, processor_config, locality)

    runtime = Runtime(storage, make_processor, invoker, telemetry=telemetry)
    runtime_box.append(runtime)
    cluster = _cluster(storage, runtime, registry, settings)
    ihost, iport = settings.ingress
    ahost, aport = settings.admin
    ingress_tls = _tls(settings.ingress_tls_cert_file, settings.ingress_tls_key_file)
    admin_tls = _tls(settings.admin_tls_cert_file, settings.admin_tls_key_file)
    ingress = Ingress(
        registry, runtime, request_size_max=settings.request_size_max_bytes, telemetry=telemetry
    )
    from perdure.server.admin.declared_schedules import ScheduleDeclarations
    from perdure.server.admin.invocations import invocation_routes
    from perdure.server.admin.limits import limits_routes
    from perdure.server.admin.schedules import schedule_routes

    async def replace_state(service: str, key: str, state: dict[bytes, bytes]) -> None:
        await runtime.call(lambda token: ReplaceState(service, key, tuple(state.items()), token))

    ingestion = Ingestion(
        kafka,
        runtime,
        registry,
        IngestionLimits(
            records_per_poll_max=settings.kafka_poll_records_max,
            record_size_max_bytes=settings.message_size_max_bytes,
            backoff_s_max=settings.kafka_restart_backoff_s_max,
        ),
    )
    query_engine = make_query_engine(
        storage,
        live_attempts=live_attempts_of(runtime),
        catalog=with_subscription_lag(registry_catalog(registry), ingestion.lag_rows),
        limits=QueryLimits(time_limit_s=settings.query_time_limit_s, rows_max=settings.query_rows_max),
    )
    await query_engine.open()
    backups = BackupRunner(
        storage, settings.data_dir, snapshot_policy(settings), s3_options(settings), backup_pace(settings)
    )
    ingress_app = protect(ingress, settings.ingress_token, ingress_body, "ingress")
    declarations = ScheduleDeclarations(runtime)
    if cluster is not None:
        cluster[0].refresh = declarations.follow(registry, cluster[0].owned)
    admin = create_admin_app(
        registry,
        client,
        version=VERSION,
        ingress_endpoint=f"{'https' if ingress_tls else 'http'}://{ihost}:{iport}/",
        extra_routes=[
            *invocation_routes(runtime),
            *limits_routes(runtime),
            *schedule_routes(runtime, registry, None if cluster is None else storage.load_schedules),
            *query_routes(query_engine),
            *state_routes(registry, replace_state),
            *journal_routes(storage.get_journal),
            *cluster_routes(
                sqlite_status(socket.gethostname())
                if isinstance(storage, SqliteStorage)
                else storage.cluster_status
            ),
            *ui_routes(ingress_app),  # the UI's invoke form keeps the ingress token check
            *_metrics_routes(telemetry, query_engine, runtime),
            *kafka_routes(kafka),
            *([] if cluster is None else cluster_forward_routes(runtime)),
            *backup_routes(backups),
        ],
        server_headers=settings.additional_request_headers,
        signer=signer,
        schedules=declarations,
    )
    admin_app = protect(admin, settings.admin_token, admin_body, "admin API", open_prefix="/ui")
    ingress_server = _http_server(ingress_app, ihost, iport, ingress_tls, IngressHttpProtocol)
    admin_server = _http_server(admin_app, ahost, aport, admin_tls)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with asyncio.TaskGroup() as tg:
            invoker.bind(tg)
            # Listen first: health answers while the processor recovers; requests
            # wait in the queue until the loop runs.
            servers = [tg.create_task(ingress_server.serve()), tg.create_task(admin_server.serve())]
            leases = []
            if cluster is not None:
                pass  # the lease keeper starts after recovery (which must see a fixed set)
            elif not isinstance(storage, SqliteStorage):
                leases.append(tg.create_task(_keep_leases(storage, settings)))
            # Health answers before recovery starts (its worker thread competes for the GIL).
            while not (ingress_server.started and admin_server.started):
                await asyncio.sleep(0.005)
            t_recover = time.monotonic()
            backlog = await runtime.recover()
            recovered_ms = (time.monotonic() - t_recover) * 1000
            if cluster is not None:
                leases.append(tg.create_task(cluster[0].run()))
            core = [
                tg.create_task(runtime.run()),
                tg.create_task(runtime.timers.run()),
                tg.create_task(invoker.run()),
                tg.create_task(
                    runtime.sweep_retention(
                        settings.cleanup_interval_ms / 1000,
                        settings.cleanup_batch_max,
                        settings.reclaim_pages_per_step,
                    )
                ),
                tg.create_task(backups.run()),
                *leases,
            ]
            if backlog:  # a start with nothing recovered logs no progress lines
                tg.create_task(log_recovery(runtime, invoker.admission))
            ingestion.start(tg)
            # A crash between a registration and its schedules' commit is mended here.
            await declarations.apply_registered(registry)
            collector.settle()
            log.info(
                "perdure listening: ingress %s://%s:%d, admin %s://%s:%d, %s (ready in %.0f ms,"
                " recovery %.0f ms, %.0f ms from the process start)",
                "https" if ingress_tls else "http",
                ihost,
                iport,
                "https" if admin_tls else "http",
                ahost,
                aport,
                describe_store(settings),
                (time.monotonic() - t0) * 1000,
                recovered_ms,
                (process_age_s() or 0.0) * 1000,
            )
            stop_wait = tg.create_task(stop.wait())
            await asyncio.wait([stop_wait, *core], return_when=asyncio.FIRST_COMPLETED)
            log.info("perdure stopping")
            await ingestion.drain()  # consumers finish their batch and commit what is durable
            ingress_server.should_exit = True
            admin_server.should_exit = True
            await asyncio.wait(servers, timeout=5)
            if cluster is not None:
                leases[0].cancel()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(cluster[0].leave(), 5)  # hand the leases over now
            for t in (*core, *servers, stop_wait, *ingestion.tasks()):
                t.cancel()
            invoker.abort_all()
    finally:
        await query_engine.close()
        await client.aclose()
        await h1_client.aclose()
        if cluster is not None:
            await cluster[1].aclose()
        if telemetry is not None:
            await asyncio.to_thread(telemetry.shutdown)
        await storage.close()
        log.info("perdure stopped")
