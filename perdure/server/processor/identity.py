"""Deterministic invocation ids: workflow runs and idempotent requests get
the same id on every submission, which is how duplicates are found."""

from __future__ import annotations

from collections.abc import Callable

from perdure.protocol.ids import InvocationId, partition_key_of, random_partition_key
from perdure.server.processor.model import Target


def invocation_id_for(
    target: Target, idempotency_key: str | None, random_pk: Callable[[], int] | None = None
) -> InvocationId:
    """Keyed and idempotent targets have a fixed partition key; a plain call gets `random_pk()`
    (a cluster node picks one in a partition it owns)."""
    pk = partition_key_of(target.key) if target.key is not None else None
    if target.handler_ty == "workflow" and target.key is not None:
        assert pk is not None
        return InvocationId.deterministic(pk, target.service, target.key, tag="wf")
    if idempotency_key is not None:
        return idempotent_id(target.service, target.key, target.handler, idempotency_key)
    if pk is None:
        pk = random_pk() if random_pk is not None else random_partition_key()
    return InvocationId.generate(pk)


def idempotent_id(
    service: str,
    key: str | None,
    handler: str,
    idempotency_key: str,
    place: Callable[[int], int] | None = None,
) -> InvocationId:
    """`place` moves a service call's partition key (the idempotency key's hash) into a partition."""
    pk = partition_key_of(key if key is not None else idempotency_key)
    if key is None and place is not None:
        pk = place(pk)
    parts = (
        (service, key, handler, idempotency_key) if key is not None else (service, handler, idempotency_key)
    )
    return InvocationId.deterministic(pk, *parts, tag="ik")


def workflow_id(service: str, key: str) -> InvocationId:
    return InvocationId.deterministic(partition_key_of(key), service, key, tag="wf")
