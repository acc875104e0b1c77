"""Several `perdure server` nodes over one PostgreSQL database (a fresh one of the session's
private PostgreSQL 15 cluster), each with its node name, and what the tests read of them."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from perdure.protocol.ids import partition_key_of
from tests.support.postgres import shared_cluster
from tests.support.servers import PerdureServer

READY_S = 90.0


class Cluster:
    def __init__(self, base: Path, nodes: int, env: dict[str, str] | None = None) -> None:
        self.pg = shared_cluster()
        self.dsn = self.pg.create_database()
        self.database = self.dsn.rsplit("/", 1)[1]
        self.nodes = [
            PerdureServer(base / f"n{i}", env={**(env or {}), "PERDURE_NODE_NAME": f"n{i}"}, store=self.dsn)
            for i in range(nodes)
        ]

    def start(self) -> None:
        """All at once, as a cluster is started: the nodes see each other before taking leases."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.start(), self.nodes))

    def stop(self) -> None:
        for node in self.nodes:
            if node.running:
                node.kill()

    def sql(self, query: str) -> str:
        return self.pg.psql(query, self.database)

    def status(self, node: PerdureServer) -> dict[str, Any]:
        resp = httpx.get(f"{node.admin_url}/cluster", timeout=10)
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def leases(self) -> dict[int, tuple[str | None, int, int]]:
        """partition -> (owner if the lease is live, epoch, last batch), read from the database."""
        rows = self.sql(
            "SELECT partition, CASE WHEN expires_at > now() THEN owner END, epoch, last_batch "
            "FROM partition_lease ORDER BY partition"
        )
        out = {}
        for line in rows.splitlines():
            p, owner, epoch, last = line.split("|")
            out[int(p)] = (owner or None, int(epoch), int(last))
        return out

    def wait_balanced(
        self, live: list[str], timeout_s: float = READY_S
    ) -> dict[int, tuple[str | None, int, int]]:
        """Every partition owned by one of `live`, each of them owning its share (within one)."""
        share = -(-64 // len(live))

        def balanced() -> dict[int, tuple[str | None, int, int]] | None:
            leases = self.leases()
            owners = [o for o, _, _ in leases.values()]
            counts = {n: owners.count(n) for n in live}
            ok = all(o in live for o in owners) and all(share - 1 <= c <= share for c in counts.values())
            return leases if ok else None

        return wait_for(balanced, timeout_s, f"64 partitions balanced over {live}")


def keys_by_owner(
    leases: dict[int, tuple[str | None, int, int]], owners: list[str], per_owner: int, prefix: str
) -> dict[str, list[str]]:
    """`per_owner` object keys (`prefix` + a number) whose partitions each of `owners` owns."""
    out: dict[str, list[str]] = {o: [] for o in owners}
    i = 0
    while any(len(v) < per_owner for v in out.values()):
        key = f"{prefix}{i}"
        owner = leases[partition_of_key(key)][0]
        if owner in out and len(out[owner]) < per_owner:
            out[owner].append(key)
        i += 1
    return out


def partition_of_key(key: str) -> int:
    return partition_key_of(key) >> 58


def wait_services(cluster: Cluster, service: str) -> None:
    for node in cluster.nodes:
        wait_for(
            lambda n=node: httpx.get(f"{n.admin_url}/services/{service}", timeout=5).status_code == 200,
            30,
            f"{node.admin_url} to see {service}",
        )


def wait_for(check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


@contextmanager
def running_cluster(base: Path, nodes: int, env: dict[str, str] | None = None) -> Iterator[Cluster]:
    cluster = Cluster(base, nodes, env)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


async def send_until_acknowledged(
    client: httpx.AsyncClient,
    cluster: Cluster,
    dead: set[int],
    path: str,
    body: object,
    ikey: str,
    timeout_s: float,
) -> str:
    """Send through a random live node, with an idempotency key, until one answers 202; the id."""
    deadline = time.monotonic() + timeout_s
    while True:
        node = random.choice([n for i, n in enumerate(cluster.nodes) if i not in dead])
        try:
            resp = await client.post(
                f"{node.ingress_url}/{path}/send", json=body, headers={"idempotency-key": ikey}
            )
            if resp.status_code == 202:
                inv: str = resp.json()["invocationId"]
                return inv
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{path} {ikey} never acknowledged"
        await asyncio.sleep(0.2)
