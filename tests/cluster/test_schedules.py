"""A schedule on a three-node cluster ticks exactly once cluster-wide: it belongs to the partition
of its name's hash, only that partition's owner arms and fires its timer, and each tick's
invocation is written in that partition's fenced batch. Put through a node that does not own it
(forwarded to the owner), then the owner is killed with SIGKILL: the node that takes the
partition over reads the schedule again and goes on ticking, catching up the ticks missed
meanwhile, so the ticks are one per second with none missed and none doubled. A schedule declared
by a deployment is applied by its partition's owner, whichever node the deployment registered on."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from perdure.server.processor.schedules import timer_id
from tests.cluster.declared import SCHEDULE as DECLARED
from tests.cluster.support import Cluster, running_cluster, wait_for, wait_services
from tests.support import PythonService, register

NAME = "cluster-every-second"
TICKS_AFTER_TAKEOVER = 3
# Expected: about the lease TTL 6 s (placement wakes at its expiry); generous for a loaded machine.
TAKEOVER_S_MAX = 60.0
TICKS_S_MAX = 90.0
RETRY_S_MAX = 30.0


def tick_times(cluster: Cluster, name: str = NAME) -> list[int]:
    rows = cluster.sql(
        "SELECT convert_from(record, 'UTF8')::jsonb ->> 'ik' FROM invocation "
        f"WHERE convert_from(record, 'UTF8')::jsonb ->> 'ik' LIKE 'schedule:{name}:%'"
    )
    return sorted(int(line.rsplit(":", 1)[1]) for line in rows.splitlines() if line.strip())


def admin(method: str, url: str, body: object = None) -> httpx.Response:
    """An admin request, asked again while it is answered 503 (the partition is moving: retryable)."""
    deadline = time.monotonic() + RETRY_S_MAX
    while True:
        resp = httpx.request(method, url, json=body, timeout=30)
        if resp.status_code != 503 or time.monotonic() > deadline:
            return resp
        time.sleep(0.5)


def test_a_schedule_ticks_once_cluster_wide_across_a_kill_and_takeover(tmp_path: Path) -> None:
    with (
        running_cluster(tmp_path, 3) as cluster,
        PythonService("tests.cluster.services", "app", log_dir=tmp_path) as svc,
    ):
        register(cluster.nodes[0].admin_url, svc.url)
        wait_services(cluster, "ClusterTicker")
        leases = cluster.wait_balanced(["n0", "n1", "n2"])
        part = int.from_bytes(timer_id(NAME)[:2], "big") >> 10  # 64 partitions
        owner, epoch, _ = leases[part]
        assert owner is not None
        victim = int(owner[1:])
        others = [n for i, n in enumerate(cluster.nodes) if i != victim]
        spec = {"target": "ClusterTicker/tick", "body": {"n": "1"}, "every": "1s", "catch_up_max": 60}
        put = admin("PUT", f"{others[0].admin_url}/schedules/{NAME}", spec)
        assert put.status_code == 201, put.text  # forwarded to the partition's owner
        for node in cluster.nodes:  # listed by every node, whichever owns it
            listed = admin("GET", f"{node.admin_url}/schedules").json()["schedules"]
            assert [s["name"] for s in listed] == [NAME], (node.admin_url, listed)

        wait_for(lambda: len(tick_times(cluster)) >= 3, TICKS_S_MAX, "three ticks", every_s=0.5)
        cluster.nodes[victim].kill()
        killed_at = time.monotonic()
        wait_for(
            lambda: (lease := cluster.leases()[part])[0] not in (None, owner) and lease[1] > epoch,
            TAKEOVER_S_MAX,
            f"a new owner of partition {part}",
        )
        print(f"partition {part} taken over {time.monotonic() - killed_at:.1f} s after the kill")
        before = len(tick_times(cluster))
        wait_for(
            lambda: len(tick_times(cluster)) >= before + TICKS_AFTER_TAKEOVER,
            TICKS_S_MAX,
            "ticks on the new owner",
            every_s=0.5,
        )
        paused = admin("PATCH", f"{others[1].admin_url}/schedules/{NAME}/pause")
        assert paused.status_code == 200, paused.text
        ticks = tick_times(cluster)
        assert ticks == list(range(ticks[0], ticks[-1] + 1, 1000)), "one invocation per tick, none missed"
        got = admin("GET", f"{others[0].admin_url}/schedules/{NAME}").json()
        assert (got["fired"], got["skipped"]) == (len(ticks), 0), got

        def all_completed() -> bool:
            done = cluster.sql(
                "SELECT count(*) FROM invocation WHERE status = 'completed' AND "
                f"convert_from(record, 'UTF8')::jsonb ->> 'ik' LIKE 'schedule:{NAME}:%'"
            )
            return int(done) == len(ticks)

        wait_for(all_completed, TICKS_S_MAX, "every tick's invocation to complete", every_s=1.0)


def test_a_declared_schedule_is_applied_by_its_partitions_owner(tmp_path: Path) -> None:
    with (
        running_cluster(tmp_path, 3) as cluster,
        PythonService("tests.cluster.declared", "app", log_dir=tmp_path) as svc,
    ):
        leases = cluster.wait_balanced(["n0", "n1", "n2"])
        owner = leases[int.from_bytes(timer_id(DECLARED)[:2], "big") >> 10][0]
        elsewhere = next(n for i, n in enumerate(cluster.nodes) if f"n{i}" != owner)
        register(elsewhere.admin_url, svc.url)  # registered on a node that does not own it
        wait_for(lambda: len(tick_times(cluster, DECLARED)) >= 3, TICKS_S_MAX, "declared ticks", every_s=0.5)
        paused = admin("PATCH", f"{elsewhere.admin_url}/schedules/{DECLARED}/pause")
        assert paused.status_code == 200, paused.text
        ticks = tick_times(cluster, DECLARED)
        assert ticks == list(range(ticks[0], ticks[-1] + 1, 1000)), "one invocation per tick, none missed"
        got = admin("GET", f"{elsewhere.admin_url}/schedules/{DECLARED}").json()
        assert (got["fired"], got["skipped"], got["paused"]) == (len(ticks), 0, True), got
