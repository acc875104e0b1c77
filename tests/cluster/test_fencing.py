"""SIGSTOP the owner of a partition past its lease: the other node takes the partition over with
a new epoch and finishes the invocation that slept there; after SIGCONT the stale node's next
commit changes nothing (no row of its old epoch is written after the steal) and it drops the
partition."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from perdure.protocol.ids import InvocationId
from tests.cluster.support import running_cluster, wait_for
from tests.support import PythonService, register

NAP_MS = 3000
SLEEP = 0x040C  # SleepCommandMessage
STEAL_S_MAX = 45.0


def test_a_paused_owner_is_fenced_and_drops_the_partition(tmp_path: Path) -> None:
    with (
        running_cluster(tmp_path, 2) as cluster,
        PythonService("tests.cluster.services", "app", log_dir=tmp_path) as svc,
    ):
        n0, n1 = cluster.nodes
        register(n0.admin_url, svc.url)
        cluster.wait_balanced(["n0", "n1"])
        sent = httpx.post(f"{n0.ingress_url}/ClusterSleeper/nap/send", json=NAP_MS, timeout=30)
        assert sent.status_code == 202, sent.text
        inv = InvocationId.parse(sent.json()["invocationId"])
        p = inv.partition_key >> 58
        owner, epoch, _ = cluster.leases()[p]
        assert owner == "n0"  # a plain call stays on the node it arrived at
        raw = f"'\\x{inv.raw.hex()}'::bytea"
        wait_for(
            lambda: cluster.sql(f"SELECT count(*) FROM journal WHERE id = {raw} AND type = {SLEEP}") == "1",
            30,
            "the sleeper to start its sleep on n0",
        )
        os.kill(n0.pid, signal.SIGSTOP)
        try:
            wait_for(
                lambda: cluster.leases()[p][0] == "n1" and cluster.leases()[p][1] > epoch,
                STEAL_S_MAX,
                "n1 to take the paused node's partition",
            )
            wait_for(
                lambda: cluster.sql(f"SELECT status FROM invocation WHERE id = {raw}") == "completed",
                30,
                "n1 to wake the sleeper",
            )
            stale_rows = cluster.sql(
                f"SELECT count(*) FROM journal WHERE partition = {p} AND writer_epoch = {epoch}"
            )
        finally:
            os.kill(n0.pid, signal.SIGCONT)
        # The stale node's timer for the sleeper fires as soon as it runs again; its commit fails.
        wait_for(
            lambda: p not in cluster.status(n0)["owned_here"],
            30,
            "n0 to drop the partition it lost",
        )
        time.sleep(2)
        after = cluster.sql(f"SELECT count(*) FROM journal WHERE partition = {p} AND writer_epoch = {epoch}")
        assert after == stale_rows
        journal = cluster.sql(f"SELECT idx, writer_epoch FROM journal WHERE id = {raw} ORDER BY idx")
        rows = [tuple(int(x) for x in line.split("|")) for line in journal.splitlines()]
        assert [i for i, _ in rows] == list(range(len(rows)))
        assert rows[-1][1] > epoch  # the wake-up and the rest were written by the new owner
        # After SIGCONT placement may hand the partition back to n0; while it moves, the ingress
        # answers 503 "partition moved; try again" (retryable by design), so ask until it settles.
        deadline = time.monotonic() + 30
        while (
            out := httpx.get(f"{n1.ingress_url}/restate/invocation/{inv}/output", timeout=30)
        ).status_code == 503:
            assert time.monotonic() < deadline, out.text
            time.sleep(0.5)
        assert out.status_code == 200 and out.json() == "rested"
        log = (n0.data_dir.parent / f"{n0.data_dir.name}.log").read_text()
        assert "lost partitions" in log or "no longer this node's" in log
