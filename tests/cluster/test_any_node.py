"""Two nodes on one database: they find each other there and split the 64 partitions; a
deployment registered on one is seen by the other; any node serves any request (a call to an
object key whose partition the other node owns is forwarded to it), and `/query` on either
node sees the invocations of every partition."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx

from perdure.protocol.ids import InvocationId, partition_key_of
from tests.cluster.support import running_cluster, wait_for
from tests.support import PythonService, query, register
from tests.support.paths import perdure_executable

TIMEOUT_S = 30.0


def _partition_of_key(key: str) -> int:
    return partition_key_of(key) >> 58


def test_two_nodes_share_partitions_registry_and_requests(tmp_path: Path) -> None:
    with (
        running_cluster(tmp_path, 2) as cluster,
        PythonService("tests.cluster.services", "app", log_dir=tmp_path) as svc,
    ):
        n0, n1 = cluster.nodes
        leases = cluster.wait_balanced(["n0", "n1"])
        register(n0.admin_url, svc.url)
        wait_for(
            lambda: httpx.get(f"{n1.admin_url}/services/ClusterCounter", timeout=5).status_code == 200,
            TIMEOUT_S,
            "n1 to see the service registered on n0",
        )
        # One key per owner; every call goes through n1's ingress.
        keys = {}
        for i in range(200):
            owner = leases[_partition_of_key(f"k{i}")][0]
            keys.setdefault(owner, f"k{i}")
        assert set(keys) == {"n0", "n1"}
        for owner, key in keys.items():
            for expected in (1, 2):
                resp = httpx.post(f"{n1.ingress_url}/ClusterCounter/{key}/add", json=1, timeout=TIMEOUT_S)
                assert resp.status_code == 200, (owner, resp.text)
                assert resp.json() == expected
            got = httpx.post(f"{n0.ingress_url}/ClusterCounter/{key}/get", json=None, timeout=TIMEOUT_S)
            assert got.json() == 2
        # A plain service call stays on the node it arrived at: its id is in a partition it owns.
        sent = httpx.post(f"{n0.ingress_url}/ClusterSleeper/nap/send", json=10, timeout=TIMEOUT_S)
        assert sent.status_code == 202, sent.text
        inv = sent.json()["invocationId"]
        assert leases[InvocationId.parse(inv).partition_key >> 58][0] == "n0"
        attached = httpx.get(f"{n1.ingress_url}/restate/invocation/{inv}/attach", timeout=TIMEOUT_S)
        assert attached.status_code == 200 and attached.json() == "rested"
        # A plain service called by a handler lives in its caller's partition (so they move together).
        relayed = httpx.post(f"{n1.ingress_url}/ClusterRelay/call_nap", json=10, timeout=TIMEOUT_S)
        assert relayed.status_code == 200 and relayed.json() == "rested", relayed.text
        pairs = query(
            n1.admin_url,
            "SELECT id, invoked_by_id FROM sys_invocation WHERE target_service_name = 'ClusterSleeper' "
            "AND invoked_by_id IS NOT NULL",
        )
        assert len(pairs) == 1
        callee, caller = (
            InvocationId.parse(pairs[0][k]).partition_key >> 58 for k in ("id", "invoked_by_id")
        )
        assert callee == caller and leases[caller][0] == "n1"
        # Introspection on either node sees both partitions' invocations.
        for node in (n0, n1):
            rows = query(node.admin_url, "SELECT id, target_service_key FROM sys_invocation")
            assert {r.get("target_service_key") for r in rows} >= set(keys.values())
            assert inv in {r["id"] for r in rows}
        status = cluster.status(n1)
        assert [n["name"] for n in status["nodes"]] == ["n0", "n1"]
        assert all(n["live"] for n in status["nodes"])
        assert sorted(status["owned_here"]) == sorted(p for p, (o, _, _) in leases.items() if o == "n1")
        # `perdure cluster`: the same document with --json, a table for people.
        cli = [str(perdure_executable()), "cluster", "--admin-url", n0.admin_url]
        doc = json.loads(subprocess.run([*cli, "--json"], check=True, capture_output=True, text=True).stdout)
        assert doc["node"] == "n0" and len(doc["partitions"]) == 64
        assert {n["name"]: n["partitions"] for n in doc["nodes"]} == {"n0": 32, "n1": 32}
        table = subprocess.run(
            cli, check=True, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}
        )
        assert "PARTITION" in table.stdout and "LEASE_AGE_S" in table.stdout and "n1" in table.stdout
