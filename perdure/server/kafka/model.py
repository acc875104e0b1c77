"""Kafka clusters and subscriptions as Restate 1.7 names and checks them: `kafka://CLUSTER/TOPIC`
sources, `service://SERVICE/HANDLER` sinks, `sub_...` ids, redaction of secret properties, and the
errors the admin API answers with (sans-IO: plain data and pure functions)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from perdure.protocol.ids import UUID_CHARS

REDACTED = "***"
STATIC_INFO = (
    "This Kafka cluster was configured in the static cluster configuration, this is deprecated. "
    "Please register it using the new Kafka Admin functionalities."
)
# Lower-cased key fragments whose values are never echoed (as Restate's is_sensitive_kafka_property).
_SENSITIVE = (
    "password",
    "secret",
    "passphrase",
    "sasl.username",
    "sasl.jaas.config",
    "sasl.oauthbearer.config",
    "token.endpoint.url",
    "ssl.key.location",
    "ssl.key.pem",
    "keystore.location",
    "truststore.location",
    "sasl.oauthbearer.assertion.private.key",
)
BOOTSTRAP_KEYS = ("bootstrap.servers", "metadata.broker.list")

# Perdure's own subscription options (not passed to librdkafka).
OPT_PAUSED = "perdure.paused"  # "true": no records are consumed until resumed
OPT_RECORD_HEADERS = "perdure.record.headers"  # "true": the record's own headers reach the handler
OPT_ON_POISON = "perdure.on.poison"  # "stall" (Restate's) | "skip" | "dead-letter"
OPT_DEAD_LETTER_TOPIC = "perdure.dead.letter.topic"  # where "dead-letter" sends (default TOPIC.dlq)
OPT_RECORD_SIZE_MAX = "perdure.record.size.max.bytes"  # larger values are poison
POISON_POLICIES = ("stall", "skip", "dead-letter")


class KafkaAdminError(Exception):
    """A refused admin request: HTTP status, message and Restate's error code (None when it has none)."""

    def __init__(self, status: int, message: str, code: str | None = None, *, plain: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.plain = plain  # plain text (Restate's request-parsing errors), not the JSON error body


def is_sensitive(key: str) -> bool:
    low = key.lower()
    return any(frag in low for frag in _SENSITIVE)


def redact(props: Mapping[str, str]) -> dict[str, str]:
    return {k: (REDACTED if is_sensitive(k) else v) for k, v in props.items()}


def rfc3339_ms(ms: int) -> str:
    """Restate's timestamp form: UTC with 9 fractional digits."""
    secs, rem = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{rem:03d}000000Z"


@dataclass(frozen=True, slots=True)
class KafkaCluster:
    name: str
    properties: dict[str, str]
    created_at_ms: int
    static: bool = False  # from the configuration file: cannot be changed through the API

    def client_properties(self) -> dict[str, str]:
        return dict(self.properties)


@dataclass(frozen=True, slots=True)
class Subscription:
    id: str
    cluster: str
    topic: str
    service: str
    handler: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return f"kafka://{self.cluster}/{self.topic}"

    @property
    def sink(self) -> str:
        return f"service://{self.service}/{self.handler}"

    @property
    def group_id(self) -> str:
        return self.options["group.id"]

    @property
    def paused(self) -> bool:
        return self.options.get(OPT_PAUSED, "false").lower() == "true"


def cluster_name_error(name: str) -> str | None:
    """Why `name` cannot be a cluster name (it must be a URI authority, i.e. a host name)."""
    if not name or len(name) > 253:
        return "invalid kafka cluster name: must be a valid hostname"
    for label in name.split("."):
        if not label or len(label) > 63 or label.startswith("-") or label.endswith("-"):
            return "invalid kafka cluster name: must be a valid hostname"
        if not all(c.isascii() and (c.isalnum() or c in "-_") for c in label):
            return "invalid kafka cluster name: must be a valid hostname"
    return None


def check_cluster_properties(name: str, props: Mapping[str, str]) -> None:
    if not any(k in props for k in BOOTSTRAP_KEYS):
        raise KafkaAdminError(
            400,
            f"kafka cluster '{name}' properties must contain either 'bootstrap.servers' or "
            "'metadata.broker.list'",
        )


def _meta_error(message: str) -> KafkaAdminError:
    return KafkaAdminError(400, f"[META0009] {message}", "META0009")


def _parse(uri: str, role: str, scheme: str, kind: str, owner: str) -> tuple[str, str]:
    """(authority, path after the first '/') of `SCHEME://AUTHORITY/PATH`, or Restate's META0009
    error. A URI without `://` has no scheme (as Rust's `http::Uri` reads `kafka:t`)."""
    got, sep, rest = uri.partition("://")
    if not sep or got != scheme:
        raise _meta_error(
            f"invalid {role} URI '{uri}': must have a scheme segment, with supported schemes: [{scheme}]."
        )
    authority, _, path = rest.partition("/")
    if not authority:
        raise _meta_error(
            f"invalid {role} URI '{uri}': {role} URI of {kind} type must have a authority segment "
            f"containing the {owner} name."
        )
    return authority, path


def parse_source(uri: str) -> tuple[str, str]:
    """(cluster, topic) of `kafka://CLUSTER/TOPIC`."""
    return _parse(uri, "source", "kafka", "Kafka", "cluster")


def parse_sink(uri: str) -> tuple[str, str]:
    """(service, handler) of `service://SERVICE/HANDLER`."""
    return _parse(uri, "sink", "service", "service", "service")


def sink_not_found(uri: str) -> KafkaAdminError:
    return _meta_error(f"invalid sink URI '{uri}': cannot find service/handler specified in the sink URI.")


def check_perdure_options(options: Mapping[str, str]) -> None:
    """Perdure's own options must have values it understands (400 otherwise)."""
    policy = options.get(OPT_ON_POISON)
    if policy is not None and policy not in POISON_POLICIES:
        raise KafkaAdminError(400, f"option '{OPT_ON_POISON}' must be one of {list(POISON_POLICIES)}")
    for flag in (OPT_PAUSED, OPT_RECORD_HEADERS):
        value = options.get(flag)
        if value is not None and value.lower() not in ("true", "false"):
            raise KafkaAdminError(400, f"option '{flag}' must be 'true' or 'false'")
    size = options.get(OPT_RECORD_SIZE_MAX)
    if size is not None and not (size.isdigit() and int(size) > 0):
        raise KafkaAdminError(400, f"option '{OPT_RECORD_SIZE_MAX}' must be a positive integer")


_ID_RESOURCES = ("inv", "dp", "sub", "awk", "sign", "prom", "snap", "st", "ph")


def subscription_id_error(text: str) -> str | None:
    """Why a path segment is not a subscription id, worded as Restate's path parser."""
    resource, sep, rest = text.partition("_")
    if not sep or not resource or resource not in _ID_RESOURCES:
        return "bad format"
    if resource != "sub":
        return "id doesn't match the expected type"
    if not rest or rest[0] != "1":
        return "unrecognized codec version"
    if len(rest) != 1 + UUID_CHARS:
        return "bad length"
    if not all(c.isascii() and c.isalnum() for c in rest[1:]):
        return "base62 decode error"
    return None


def subscription_json(sub: Subscription) -> dict[str, object]:
    return {"id": sub.id, "source": sub.source, "sink": sub.sink, "options": redact(sub.options)}


def cluster_json(cluster: KafkaCluster, info: list[str] | None = None) -> dict[str, object]:
    out: dict[str, object] = {
        "name": cluster.name,
        "properties": redact(cluster.properties),
        "created_at": rfc3339_ms(cluster.created_at_ms),
    }
    notes = list(info or [])
    if cluster.static:
        notes.insert(0, STATIC_INFO)
    if notes:
        out["info"] = [{"message": m} for m in notes]
    return out
