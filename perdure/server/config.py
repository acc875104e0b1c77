"""Server settings: one typed object, the single source of truth.

Every field says where it comes from: its Restate configuration key (TOML path in a
`restate.toml`, and `RESTATE_*` environment variable with `__` nesting) when Restate has the
option, and always `PERDURE_<FIELD>` (and `[perdure] <field-with-dashes>` in the file).
`perdure.server.config_sources` layers flags > environment > file > defaults over these fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

VERSION = "1.7.12"  # the Restate admin API level we implement; reported by /version
PERDURE_VERSION = "0.1.0"

# Kinds of values: how a text (env var, flag) or a TOML value becomes the field's value.
STR, INT, FLOAT, BOOL, PATH, DURATION, SIZE, HEADERS, RAW, CHOICE = (
    "str",
    "int",
    "float",
    "bool",
    "path",
    "duration",  # milliseconds; Restate's friendly or ISO 8601 text
    "size",  # bytes; `32 MiB`
    "headers",  # table of strings
    "raw",  # any TOML value, kept as read (for another component to interpret)
    "choice",
)
SECRET = "secret"  # metadata flag: never printed by --dump-config


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, got '{text}'")
    return (host or "0.0.0.0").strip("[]"), int(port)


def _opt(
    default: Any,
    kind: str,
    help: str,
    restate: str | None = None,
    choices: tuple[str, ...] = (),
    secret: bool = False,
) -> Any:
    meta = {"kind": kind, "help": help, "restate": restate, "choices": choices, SECRET: secret}
    if isinstance(default, dict | list):
        frozen = default
        return field(default_factory=lambda: type(frozen)(frozen), metadata=meta)
    return field(default=default, metadata=meta)


MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Settings:
    # --- where and how it listens ---
    data_dir: Path = _opt(Path("perdure-data"), PATH, "Where the durable state lives.", "base-dir")
    ingress_address: str = _opt(
        "127.0.0.1:8080", STR, "HOST:PORT of the ingress (invocations).", "ingress.bind-address"
    )
    admin_address: str = _opt("127.0.0.1:9070", STR, "HOST:PORT of the admin API.", "admin.bind-address")
    ingress_token: str | None = _opt(
        None, STR, "Bearer token the ingress requires (none: open).", secret=True
    )
    admin_token: str | None = _opt(
        None, STR, "Bearer token the admin API requires (none: open).", secret=True
    )
    ingress_tls_cert_file: Path | None = _opt(None, PATH, "PEM certificate: the ingress serves HTTPS.")
    ingress_tls_key_file: Path | None = _opt(None, PATH, "PEM private key of the ingress certificate.")
    admin_tls_cert_file: Path | None = _opt(None, PATH, "PEM certificate: the admin API serves HTTPS.")
    admin_tls_key_file: Path | None = _opt(None, PATH, "PEM private key of the admin certificate.")
    # --- limits ---
    request_size_max_bytes: int = _opt(
        32 * MIB, SIZE, "Largest ingress request body (413 above).", "ingress.request-size-limit"
    )
    message_size_max_bytes: int = _opt(
        32 * MIB, SIZE, "Largest protocol message from a service.", "worker.invoker.message-size-limit"
    )
    eager_state_size_max_bytes: int = _opt(
        32 * MIB,
        SIZE,
        "Most state sent eagerly with an attempt (beyond: lazy).",
        "worker.invoker.eager-state-size-limit",
    )
    concurrent_invocations_max: int = _opt(
        1_000, INT, "Attempts in flight at once.", "worker.invoker.concurrent-invocations-limit"
    )
    # An attempt waiting on the server this long, while others wait for a slot, is
    # parked (suspended) to make room; parked attempts still winding down are bounded.
    attempt_park_idle_ms: int = _opt(
        250, DURATION, "An attempt idle this long is parked (suspended) when others wait for a slot."
    )
    attempts_parked_max: int = _opt(10_000, INT, "Most parked attempts still winding down.")
    # Resumptions, retries and attempts restarted after a restart hold at most this share of
    # the slots: the rest stay free for first attempts (a new call starts at once).
    other_attempts_percent: int = _opt(
        25, INT, "Most slots (percent) held by attempts other than first attempts."
    )
    # --- invoker ---
    inactivity_timeout_ms: int = _opt(
        60_000,
        DURATION,
        "Idle stream closed after this (the service suspends).",
        "worker.invoker.inactivity-timeout",
    )
    abort_timeout_ms: int = _opt(
        600_000,
        DURATION,
        "After the inactivity close, an attempt is aborted after this.",
        "worker.invoker.abort-timeout",
    )
    connect_timeout_ms: int = _opt(
        10_000, DURATION, "Connecting to a service gives up after this.", "worker.invoker.connect-timeout"
    )
    additional_request_headers: dict[str, str] = _opt(
        {"x-restate-cluster-name": "localcluster"},
        HEADERS,
        "Headers sent with every request to a service.",
        "worker.invoker.additional-request-headers",
    )
    request_identity_private_key_pem_file: Path | None = _opt(
        None,
        PATH,
        "ed25519 private key (PEM): requests to services are signed.",
        "worker.invoker.request-identity-private-key-pem-file",
    )
    request_identity_expiration_ms: int = _opt(
        60_000, DURATION, "Lifetime of a request signature.", "worker.invoker.request-identity-expiration"
    )
    # --- default retry policy (services and handlers may override it) ---
    retry_initial_interval_ms: int = _opt(
        500, DURATION, "First retry delay.", "default-retry-policy.initial-interval"
    )
    retry_exponentiation_factor: float = _opt(
        2.0,
        FLOAT,
        "Each retry delay is the previous one times this.",
        "default-retry-policy.exponentiation-factor",
    )
    retry_max_attempts: int = _opt(
        70, INT, "Attempts before on-max-attempts.", "default-retry-policy.max-attempts"
    )
    retry_max_interval_ms: int = _opt(
        60_000, DURATION, "Longest retry delay.", "default-retry-policy.max-interval"
    )
    retry_on_max_attempts: str = _opt(
        "pause",
        CHOICE,
        "After the last attempt: pause (resumable) or kill.",
        "default-retry-policy.on-max-attempts",
        choices=("pause", "kill"),
    )
    # --- default retentions ---
    journal_retention_ms: int = _opt(
        86_400_000, DURATION, "Journal kept after completion.", "default-journal-retention"
    )
    idempotency_retention_ms: int = _opt(
        86_400_000, DURATION, "Output of idempotent invocations kept.", "default-idempotency-retention"
    )
    workflow_completion_retention_ms: int = _opt(
        86_400_000, DURATION, "Workflow output kept.", "default-workflow-completion-retention"
    )
    # --- retention cleanup ---
    cleanup_interval_ms: int = _opt(
        30_000,
        DURATION,
        "How often expired invocations and journals are purged (Restate: 1h; Perdure reclaims sooner).",
        "worker.cleanup-interval",
    )
    cleanup_batch_max: int = _opt(1_000, INT, "Records purged per commit by the cleanup.")
    reclaim_pages_per_step: int = _opt(
        2_048, INT, "Free SQLite pages returned to the file system per step after a cleanup."
    )
    # --- periodic snapshots ([worker.snapshots]; SQLite store) ---
    snapshot_destination: str | None = _opt(
        None,
        STR,
        "Where periodic snapshots go: file:///dir (or /dir) or s3://bucket/prefix (none: no snapshots).",
        "worker.snapshots.destination",
    )
    snapshot_interval_ms: int | None = _opt(
        None,
        DURATION,
        "How often a snapshot is taken (none: only on request, POST /backups).",
        "worker.snapshots.snapshot-interval",
    )
    snapshot_num_retained: int | None = _opt(
        None, INT, "Snapshots kept; older ones are deleted (none: all kept).", "worker.snapshots.num-retained"
    )
    backup_step_pages: int = _opt(1_024, INT, "Database pages a backup copies per step.")
    backup_rate_max_bytes: int | None = _opt(
        None, SIZE, "Most bytes per second a backup reads (none: as fast as the disk allows)."
    )
    snapshot_aws_region: str | None = _opt(
        None, STR, "S3 region of the snapshot bucket.", "worker.snapshots.aws-region"
    )
    snapshot_aws_access_key_id: str | None = _opt(
        None, STR, "S3 access key id.", "worker.snapshots.aws-access-key-id"
    )
    snapshot_aws_secret_access_key: str | None = _opt(
        None, STR, "S3 secret access key.", "worker.snapshots.aws-secret-access-key", secret=True
    )
    snapshot_aws_session_token: str | None = _opt(
        None, STR, "S3 session token.", "worker.snapshots.aws-session-token", secret=True
    )
    snapshot_aws_endpoint_url: str | None = _opt(
        None, STR, "S3-compatible endpoint (MinIO, SeaweedFS, ...).", "worker.snapshots.aws-endpoint-url"
    )
    snapshot_aws_allow_http: bool = _opt(
        False, BOOL, "Allow a plain-HTTP S3 endpoint.", "worker.snapshots.aws-allow-http"
    )
    snapshot_aws_profile: str | None = _opt(
        None, STR, "AWS profile (~/.aws) for the snapshot bucket.", "worker.snapshots.aws-profile"
    )
    # --- observability and integrations ---
    tracing_endpoint: str | None = _opt(
        None,
        STR,
        "Export traces over OTLP: http(s)://HOST:PORT (gRPC) or otlp+http(s)://HOST:PORT/v1/traces "
        "(HTTP); unset, the OTEL_EXPORTER_OTLP_* variables apply.",
        "tracing-endpoint",
    )
    disable_prometheus: bool = _opt(False, BOOL, "Serve no /metrics and count nothing.", "disable-prometheus")
    kafka_clusters: list[Any] = _opt(
        [], RAW, "Kafka clusters (as Restate's [[ingress.kafka-clusters]]).", "ingress.kafka-clusters"
    )
    kafka_poll_records_max: int = _opt(500, INT, "Records one Kafka consumer hands to the processor at once.")
    kafka_restart_backoff_s_max: float = _opt(
        10.0, FLOAT, "A failing Kafka consumer restarts after 0.2 s, 0.4 s, ... up to this."
    )
    # --- Perdure only ---
    query_time_limit_s: float = _opt(10.0, FLOAT, "Longest a /query may run before it is stopped.")
    query_rows_max: int = _opt(100_000, INT, "Most rows a /query answers.")
    log_level: str = _opt(
        "info", CHOICE, "debug, info, warning or error.", choices=("debug", "info", "warning", "error")
    )
    store: str | None = _opt(
        None,
        STR,
        "postgresql://USER@HOST:PORT/DB keeps the durable state in PostgreSQL "
        "(none: embedded SQLite in data_dir; passwords belong in PGPASSWORD or ~/.pgpass).",
    )
    store_pool_size: int = _opt(8, INT, "PostgreSQL connections for commits and metadata.")
    lease_ttl_ms: int = _opt(6_000, DURATION, "PostgreSQL: partition lease lifetime (database clock).")
    lease_renew_ms: int = _opt(2_000, DURATION, "PostgreSQL: how often the node renews its leases.")
    node_name: str | None = _opt(
        None,
        STR,
        "PostgreSQL: this node's name in a cluster of nodes sharing the store (none: a single node "
        "that owns every partition). Nodes with a name find each other in the database and share "
        "the partitions.",
        "node-name",
    )
    advertised_address: str | None = _opt(
        None,
        STR,
        "Cluster: the http://HOST:PORT other nodes reach this node's admin API at (forwarded "
        "requests); default: the admin address (its host, or this machine's name for 0.0.0.0).",
        "advertised-address",
    )

    @property
    def ingress(self) -> tuple[str, int]:
        return parse_address(self.ingress_address)

    @property
    def admin(self) -> tuple[str, int]:
        return parse_address(self.admin_address)

    def validate(self) -> None:
        """Cross-field checks a single value cannot make; raises ValueError with the reason."""
        self.ingress  # noqa: B018 - parses, raising on a bad address
        self.admin  # noqa: B018
        for side in ("ingress", "admin"):
            cert = getattr(self, f"{side}_tls_cert_file")
            key = getattr(self, f"{side}_tls_key_file")
            if (cert is None) != (key is None):
                raise ValueError(f"{side} TLS needs both a certificate file and a key file")
        if self.retry_exponentiation_factor < 1.0:
            raise ValueError("default-retry-policy.exponentiation-factor must be at least 1.0")
        if self.retry_max_attempts < 1:
            raise ValueError("default-retry-policy.max-attempts must be at least 1")
        if min(self.cleanup_interval_ms, self.cleanup_batch_max, self.reclaim_pages_per_step) < 1:
            raise ValueError(
                "worker.cleanup-interval, cleanup-batch-max and reclaim-pages-per-step must be positive"
            )
        if self.concurrent_invocations_max < 1:
            raise ValueError("worker.invoker.concurrent-invocations-limit must be at least 1")
        if not 1 <= self.other_attempts_percent <= 100:
            raise ValueError("other_attempts_percent must be between 1 and 100")
        rate = self.backup_rate_max_bytes
        if self.backup_step_pages < 1 or (rate is not None and rate < 1):
            raise ValueError("backup_step_pages and backup_rate_max_bytes must be positive")
        if self.snapshot_interval_ms is not None and self.snapshot_interval_ms < 1:
            raise ValueError("worker.snapshots.snapshot-interval must be positive")
        if self.snapshot_num_retained is not None and self.snapshot_num_retained < 1:
            raise ValueError("worker.snapshots.num-retained must be at least 1")
        if self.snapshot_interval_ms is not None and self.snapshot_destination is None:
            raise ValueError("worker.snapshots.snapshot-interval needs worker.snapshots.destination")
        if self.snapshot_destination is not None and self.store is not None:
            raise ValueError(
                "worker.snapshots applies to the embedded SQLite store; back a PostgreSQL store up with "
                "pg_dump or pg_basebackup (docs/backup.md)"
            )
        if self.store_pool_size < 1:
            raise ValueError("store_pool_size must be at least 1")
        if not 0 < self.lease_renew_ms < self.lease_ttl_ms / 2:
            raise ValueError("lease_renew_ms must be positive and under half of lease_ttl_ms")
        if self.node_name is not None and not self.store:
            raise ValueError("node-name needs a PostgreSQL store (--store): nodes share its partitions")
        from perdure.server.storage.factory import check_store_url

        check_store_url(self.store)


def setting_fields() -> tuple[Any, ...]:
    """The dataclass fields of `Settings`, with their metadata (kind, help, restate key)."""
    return fields(Settings)
