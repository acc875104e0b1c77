"""A Kafka record becomes an invocation request (sans-IO): body = value, key = object/workflow key,
Restate's six headers in Restate's order, and the record's own headers when the subscription opts in.
A record that cannot become one raises `PoisonRecord` with the reason."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass

from perdure.server.kafka.model import OPT_RECORD_HEADERS, OPT_RECORD_SIZE_MAX, Subscription
from perdure.server.processor.commands import InvokeRequest
from perdure.server.processor.model import Target
from perdure.server.processor.schema import SERVICE_TY, handler_kind
from perdure.server.registry import Registry


class PoisonRecord(Exception):
    """The record cannot become an invocation (bad key, too large, sink gone)."""


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None
    headers: Sequence[tuple[str, bytes | None]] = ()


def producer_key(sub: Subscription, topic: str, partition: int) -> str:
    """The dedup stream of one topic partition as seen by one subscription and group."""
    return f"kafka\x1f{sub.id}\x1f{sub.group_id}\x1f{topic}\x1f{partition}"


def restate_headers(sub: Subscription, rec: KafkaRecord) -> list[tuple[str, str]]:
    headers = [
        ("kafka.offset", str(rec.offset)),
        ("kafka.topic", rec.topic),
        ("kafka.partition", str(rec.partition)),
    ]
    if rec.timestamp_ms is not None:
        headers.append(("kafka.timestamp", str(rec.timestamp_ms)))
    headers.append(("restate.subscription.id", sub.id))
    if rec.key is not None:
        headers.append(("kafka.key", base64.urlsafe_b64encode(rec.key).decode("ascii")))
    return headers


def to_request(sub: Subscription, rec: KafkaRecord, registry: Registry, size_max: int) -> InvokeRequest:
    svc = registry.service(sub.service)
    handler = svc.handlers.get(sub.handler) if svc is not None else None
    if svc is None or handler is None:
        raise PoisonRecord(f"Service and handler are not registered: {sub.sink}")
    value = rec.value or b""  # a tombstone is an empty body
    limit = int(sub.options.get(OPT_RECORD_SIZE_MAX, size_max))
    if len(value) > limit:
        raise PoisonRecord(f"record value of {len(value)} bytes exceeds the limit of {limit} bytes")
    key: str | None = None
    if svc.ty != "SERVICE":
        try:
            key = (rec.key or b"").decode("utf-8")  # a null key is the empty key, as in Restate
        except UnicodeDecodeError as exc:
            raise PoisonRecord(f"The Kafka record key must be valid UTF-8: {exc}") from None
    headers = restate_headers(sub, rec)
    if sub.options.get(OPT_RECORD_HEADERS, "false").lower() == "true":
        headers += [(name, (v or b"").decode("utf-8", "replace")) for name, v in rec.headers]
    target = Target(sub.service, sub.handler, key, SERVICE_TY[svc.ty], handler_kind(svc, handler))
    wf_retention = svc.workflow_completion_retention_ms or svc.idempotency_retention_ms
    return InvokeRequest(
        target=target,
        input=value,
        headers=tuple(headers),
        idempotency_retention_ms=svc.idempotency_retention_ms,
        workflow_retention_ms=wf_retention,
        journal_retention_ms=svc.journal_retention_ms,
    )
