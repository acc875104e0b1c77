"""kill -9 one of three nodes under load (sends to a counter object and to a sleeping handler of
the official Python SDK, through every node's ingress, each logical request retried with its
idempotency key until acknowledged): the dead node's partitions get a new owner with a new
epoch, every acknowledged invocation completes, the counters are exact, journal indexes are
contiguous, and the invocations that slept on the dead node wake on another one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from perdure.protocol.ids import InvocationId
from tests.cluster.support import Cluster, running_cluster, send_until_acknowledged, wait_for, wait_services
from tests.support import PythonService, register

KEYS = [f"c{i}" for i in range(8)]
ADDS = 120
SLEEPERS = 24
NAP_MS = 5000
CONCURRENCY = 8
# Expected: about the lease TTL 6 s (placement wakes at its expiry); generous for a loaded machine.
TAKEOVER_S_MAX = 30.0
DONE_S_MAX = 90.0
REQUEST_S_MAX = 60.0
KILLED_AT: list[float] = []


async def _send(
    client: httpx.AsyncClient, cluster: Cluster, dead: set[int], path: str, body: object, ikey: str
) -> str:
    return await send_until_acknowledged(client, cluster, dead, path, body, ikey, REQUEST_S_MAX)


async def _load(cluster: Cluster, victim: int, dead: set[int]) -> tuple[dict[str, int], list[str], list[str]]:
    counts = dict.fromkeys(KEYS, 0)
    adds: list[str] = []
    sleepers: list[str] = []
    jobs: asyncio.Queue[tuple[str, object, str, str]] = asyncio.Queue()
    for i in range(SLEEPERS):
        jobs.put_nowait(("ClusterSleeper/nap", NAP_MS, f"nap-{i}", "sleep"))
    for i in range(ADDS):
        key = KEYS[i % len(KEYS)]
        counts[key] += 1
        jobs.put_nowait((f"ClusterCounter/{key}/add", 1, f"add-{i}", "add"))
    total = jobs.qsize()

    async def worker(client: httpx.AsyncClient) -> None:
        while not jobs.empty():
            path, body, ikey, kind = jobs.get_nowait()
            inv = await _send(client, cluster, dead, path, body, ikey)
            (sleepers if kind == "sleep" else adds).append(inv)
            if victim not in dead and len(adds) + len(sleepers) >= total // 3:
                cluster.nodes[victim].kill()  # SIGKILL mid-load
                dead.add(victim)
                KILLED_AT.append(time.monotonic())

    async with httpx.AsyncClient(timeout=10) as client, asyncio.TaskGroup() as tg:
        for _ in range(CONCURRENCY):
            tg.create_task(worker(client))
    return counts, adds, sleepers


def test_a_killed_node_loses_nothing_acknowledged(tmp_path: Path) -> None:
    with (
        running_cluster(tmp_path, 3) as cluster,
        PythonService("tests.cluster.services", "app", log_dir=tmp_path) as svc,
    ):
        register(cluster.nodes[0].admin_url, svc.url)
        wait_services(cluster, "ClusterSleeper")
        before = cluster.wait_balanced(["n0", "n1", "n2"])
        victim = 2
        theirs = {p: epoch for p, (owner, epoch, _) in before.items() if owner == "n2"}
        dead: set[int] = set()
        counts, adds, sleepers = asyncio.run(_load(cluster, victim, dead))
        assert dead == {victim}
        killed_at = KILLED_AT[-1]

        def taken_over() -> bool:
            leases = cluster.leases()
            return all(leases[p][0] in ("n0", "n1") and leases[p][1] > e for p, e in theirs.items())

        wait_for(
            taken_over,
            TAKEOVER_S_MAX - (time.monotonic() - killed_at),
            "new owners of the dead node's partitions",
        )
        print(f"takeover of {len(theirs)} partitions {time.monotonic() - killed_at:.1f} s after the kill")

        acknowledged = adds + sleepers

        def all_completed() -> bool:
            ids = ",".join(f"'\\x{InvocationId.parse(i).raw.hex()}'::bytea" for i in acknowledged)
            done = cluster.sql(
                f"SELECT count(*) FROM invocation WHERE status = 'completed' AND id IN ({ids})"
            )
            return int(done) == len(set(acknowledged))

        wait_for(all_completed, DONE_S_MAX, "every acknowledged invocation to complete", every_s=1.0)
        survivor = cluster.nodes[0]
        for key, n in counts.items():
            got = httpx.post(f"{survivor.ingress_url}/ClusterCounter/{key}/get", json=None, timeout=30)
            assert got.status_code == 200 and got.json() == n, (key, got.text, n)
        gaps = cluster.sql(
            "SELECT count(*) FROM (SELECT min(idx) AS lo, max(idx) AS hi, count(*) AS n, "
            "count(DISTINCT idx) AS d FROM journal GROUP BY partition, id) j "
            "WHERE lo <> 0 OR hi <> n - 1 OR d <> n"
        )
        assert gaps == "0"
        slept_there = [i for i in sleepers if (InvocationId.parse(i).partition_key >> 58) in theirs]
        assert slept_there, "some sleepers were in the dead node's partitions"
        outputs = {
            i: httpx.get(f"{survivor.ingress_url}/restate/invocation/{i}/output", timeout=30)
            for i in slept_there
        }
        assert all(r.status_code == 200 and r.json() == "rested" for r in outputs.values())
