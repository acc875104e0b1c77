"""The partition mailbox through failures.

kill -9 of one of three nodes under a load of object-call chains that cross all three nodes
(each chain sent with an idempotency key, retried through any live node until acknowledged):
every acknowledged chain completes with the right result, each key's visit count is exact (no
step ran twice, none was lost: a visit is one journaled step and one state write), journal
indexes are contiguous, and the mailbox ends empty.

A request during a takeover window (the owner killed, its lease not expired yet, so no live
node owns the partition) goes into the partition's durable inbox: a send is acknowledged with
its invocation id while the dead node still holds the lease, its retry with the same
idempotency key is the same invocation, a call waits and gets its result once the partition
has a new owner."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx

from perdure.protocol.ids import InvocationId
from tests.cluster.support import (
    Cluster,
    keys_by_owner,
    partition_of_key,
    running_cluster,
    send_until_acknowledged,
    wait_for,
    wait_services,
)
from tests.support import PythonService, register

OWNERS = ["n0", "n1", "n2"]
CHAINS = 36
HOPS = 4
CONCURRENCY = 6
REQUEST_S_MAX = 90.0
DONE_S_MAX = 120.0


def _chain_keys(keys: dict[str, list[str]]) -> list[str]:
    """Keys in one global order, each owned by the next node in turn: a path of consecutive keys
    crosses all three nodes, and paths that only go forward in the order cannot deadlock on each
    other's object locks."""
    return [keys[OWNERS[i % 3]][i // 3] for i in range(3 * len(keys["n0"]))]


async def _send(
    client: httpx.AsyncClient, cluster: Cluster, dead: set[int], path: str, body: object, ikey: str
) -> str:
    return await send_until_acknowledged(client, cluster, dead, path, body, ikey, REQUEST_S_MAX)


def test_kill_a_node_mid_chain(tmp_path: Path) -> None:
    with (
        running_cluster(tmp_path, 3) as cluster,
        PythonService("tests.cluster.services", "app", log_dir=tmp_path) as svc,
    ):
        register(cluster.nodes[0].admin_url, svc.url)
        wait_services(cluster, "ClusterChain")
        leases = cluster.wait_balanced(OWNERS)
        order = _chain_keys(keys_by_owner(leases, OWNERS, 3, "h"))
        chains = []
        visits = dict.fromkeys(order, 0)
        for i in range(CHAINS):
            start = i % (len(order) - HOPS)
            path = order[start : start + HOPS + 1]
            chains.append(path)
            for key in path:
                visits[key] += 1
        victim, dead = 2, set[int]()
        acknowledged: dict[str, list[str]] = {}

        async def load() -> None:
            jobs = list(enumerate(chains))

            async def worker(client: httpx.AsyncClient) -> None:
                while jobs:
                    i, path = jobs.pop(0)
                    inv = await _send(
                        client, cluster, dead, f"ClusterChain/{path[0]}/hop", path[1:], f"chain-{i}"
                    )
                    acknowledged[inv] = path
                    if victim not in dead and len(acknowledged) >= CHAINS // 3:
                        cluster.nodes[victim].kill()  # SIGKILL with chains in flight across it
                        dead.add(victim)

            async with httpx.AsyncClient(timeout=10) as client, asyncio.TaskGroup() as tg:
                for _ in range(CONCURRENCY):
                    tg.create_task(worker(client))

        asyncio.run(load())
        assert dead == {victim} and len(acknowledged) == CHAINS

        def all_completed() -> bool:
            ids = ",".join(f"'\\x{InvocationId.parse(i).raw.hex()}'::bytea" for i in acknowledged)
            done = cluster.sql(
                f"SELECT count(*) FROM invocation WHERE status = 'completed' AND id IN ({ids})"
            )
            return int(done) == CHAINS

        wait_for(all_completed, DONE_S_MAX, "every acknowledged chain to complete", every_s=1.0)
        survivor = cluster.nodes[0]
        with httpx.Client(timeout=30) as http:
            for inv, path in acknowledged.items():
                out = http.get(f"{survivor.ingress_url}/restate/invocation/{inv}/output")
                assert out.status_code == 200 and out.json() == path, (inv, out.text)
            for key, n in visits.items():
                got = http.post(f"{survivor.ingress_url}/ClusterChain/{key}/visits", json=None)
                assert got.status_code == 200 and got.json() == n, (key, got.text, n)
        gaps = cluster.sql(
            "SELECT count(*) FROM (SELECT min(idx) AS lo, max(idx) AS hi, count(*) AS n, "
            "count(DISTINCT idx) AS d FROM journal GROUP BY partition, id) j "
            "WHERE lo <> 0 OR hi <> n - 1 OR d <> n"
        )
        assert gaps == "0"
        wait_for(lambda: cluster.sql("SELECT count(*) FROM mailbox") == "0", DONE_S_MAX, "an empty mailbox")


LONG_TTL = {"PERDURE_LEASE_TTL_MS": "20s"}  # a takeover window wide enough to send into


def test_a_request_without_a_live_owner_goes_to_the_inbox(tmp_path: Path) -> None:
    with (
        running_cluster(tmp_path, 2, LONG_TTL) as cluster,
        PythonService("tests.cluster.services", "app", log_dir=tmp_path) as svc,
    ):
        n0, n1 = cluster.nodes
        register(n0.admin_url, svc.url)
        wait_services(cluster, "ClusterCounter")
        leases = cluster.wait_balanced(["n0", "n1"])
        sent_key, called_key = keys_by_owner(leases, ["n1"], 2, "t")["n1"]
        p = partition_of_key(sent_key)
        epoch = leases[p][1]
        n1.kill()
        http = httpx.Client(timeout=REQUEST_S_MAX)
        called: list[httpx.Response] = []
        call = threading.Thread(
            target=lambda: called.append(
                http.post(f"{n0.ingress_url}/ClusterCounter/{called_key}/add", json=5)
            )
        )
        call.start()
        first = http.post(
            f"{n0.ingress_url}/ClusterCounter/{sent_key}/add/send", json=1, headers={"idempotency-key": "k"}
        )
        again = http.post(
            f"{n0.ingress_url}/ClusterCounter/{sent_key}/add/send", json=1, headers={"idempotency-key": "k"}
        )
        _, epoch_then, _ = cluster.leases()[p]
        assert first.status_code == 202 and again.status_code == 202, (first.text, again.text)
        assert first.json()["invocationId"] == again.json()["invocationId"]
        # Acknowledged while the dead node still held the partition: from the inbox, nothing else.
        assert epoch_then == epoch, "the partition was taken over before the sends were answered"
        assert int(cluster.sql(f"SELECT count(*) FROM mailbox WHERE partition = {p}")) >= 1
        assert cluster.status(n0)["partitions"][p]["mailbox_rows"] >= 1  # GET /cluster shows it waiting
        call.join(REQUEST_S_MAX)
        assert called and called[0].status_code == 200 and called[0].json() == 5, called
        leases_after = cluster.leases()
        assert leases_after[p][0] == "n0" and leases_after[p][1] > epoch
        inv = first.json()["invocationId"]
        out = wait_for(
            lambda: (
                (r := http.get(f"{n0.ingress_url}/restate/invocation/{inv}/output")).status_code == 200 and r
            ),
            REQUEST_S_MAX,
            "the inboxed send to complete",
        )
        assert out.json() == 1
        got = http.post(f"{n0.ingress_url}/ClusterCounter/{sent_key}/get", json=None)
        assert got.json() == 1  # the retry with the same idempotency key did not add again
        assert cluster.sql("SELECT count(*) FROM mailbox") == "0"
