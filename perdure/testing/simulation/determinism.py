"""Make invocation ids reproducible: the processor draws fresh ids from the
wall clock and os.urandom; inside a simulation they come from the seed, so a
run (ids, timer order, dict order) replays exactly."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

from perdure.protocol import ids
from perdure.server.processor import identity


@contextmanager
def seeded_ids(rng: random.Random) -> Iterator[None]:
    """Patch the two entropy sources of `InvocationId.generate` for the duration."""
    saved_ulid = ids._ulid_bytes
    saved_pk = identity.random_partition_key  # type: ignore[attr-defined]

    def ulid_bytes() -> bytes:
        return rng.randbytes(16)

    def partition_key() -> int:
        return rng.getrandbits(64)

    ids._ulid_bytes = ulid_bytes
    identity.random_partition_key = partition_key  # type: ignore[attr-defined]
    try:
        yield
    finally:
        ids._ulid_bytes = saved_ulid
        identity.random_partition_key = saved_pk  # type: ignore[attr-defined]
