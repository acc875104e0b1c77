"""The partition mailbox on three nodes: a handler on one node calls, sends to, signals,
resolves awakeables of, attaches to and cancels invocations and object keys whose partitions the
other nodes own (each through an outbox row written in the sender's batch and applied by the
owner's), results find their way back, one handler's sends to one key arrive in the order sent,
and a chain of object calls crosses all three nodes and comes back."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.cluster.services import NOTES
from tests.cluster.support import keys_by_owner, running_cluster, wait_for, wait_services
from tests.support import PythonService, register

TIMEOUT_S = 60.0
OWNERS = ["n0", "n1", "n2"]


def test_handlers_reach_keys_and_invocations_of_other_nodes(tmp_path: Path) -> None:
    with (
        running_cluster(tmp_path, 3) as cluster,
        PythonService("tests.cluster.services", "app", log_dir=tmp_path) as svc,
    ):
        n0, n1, n2 = cluster.nodes
        leases = cluster.wait_balanced(OWNERS)
        register(n0.admin_url, svc.url)
        wait_services(cluster, "ClusterResolver")
        keys = keys_by_owner(leases, OWNERS, 4, "m")
        post = httpx.Client(timeout=TIMEOUT_S)

        # Calls and sends from a handler on n0 to counters on n1 and n2, results back to n0.
        targets = [keys["n1"][0], keys["n2"][0]]
        fanned = post.post(f"{n1.ingress_url}/ClusterFan/{keys['n0'][0]}/spread", json=targets)
        assert fanned.status_code == 200, fanned.text
        assert fanned.json() == 2  # each target's first add answered 1
        for key in targets:
            wait_for(
                lambda k=key: post.post(f"{n2.ingress_url}/ClusterCounter/{k}/get", json=None).json() == 2,
                TIMEOUT_S,
                f"the send to {key} to be applied",
            )
            # Sends from one handler to one key arrive in the order they were sent.
            expected = [f"{keys['n0'][0]}-{i}" for i in range(NOTES)]
            wait_for(
                lambda k=key, e=expected: (
                    post.post(f"{n0.ingress_url}/ClusterNotes/{k}/read", json=None).json() == e
                ),
                TIMEOUT_S,
                f"the notes to {key} in order",
            )

        # A chain of object calls over the three nodes, and back.
        path = [keys["n1"][1], keys["n2"][1], keys["n0"][2], keys["n1"][2], keys["n2"][2]]
        chained = post.post(f"{n2.ingress_url}/ClusterChain/{keys['n0'][1]}/hop", json=path)
        assert chained.status_code == 200, chained.text
        assert chained.json() == [keys["n0"][1], *path]
        for key in [keys["n0"][1], *path]:
            got = post.post(f"{n1.ingress_url}/ClusterChain/{key}/visits", json=None)
            assert got.json() == 1, (key, got.text)

        # An awakeable of a key on n0 resolved by a handler of a key on n2.
        woken = post.post(f"{n0.ingress_url}/ClusterWaiter/{keys['n0'][3]}/wait", json=keys["n2"][3])
        assert woken.status_code == 200 and woken.json() == f"woken by {keys['n2'][3]}", woken.text

        # Attach from a handler on n0 to an invocation in n1's partition.
        sent = post.post(f"{n1.ingress_url}/ClusterSleeper/nap/send", json=10)
        assert sent.status_code == 202, sent.text
        nap = sent.json()["invocationId"]
        attached = post.post(f"{n0.ingress_url}/ClusterWaiter/{keys['n0'][3]}/attach_to", json=nap)
        assert attached.status_code == 200 and attached.json() == "rested", attached.text

        # A cancel signal from a handler on n0 to a long nap in n2's partition.
        sent = post.post(f"{n2.ingress_url}/ClusterSleeper/nap/send", json=3_600_000)
        assert sent.status_code == 202, sent.text
        long_nap = sent.json()["invocationId"]
        cancelled = post.post(f"{n0.ingress_url}/ClusterWaiter/{keys['n0'][3]}/cancel", json=long_nap)
        assert cancelled.status_code == 200, cancelled.text
        outcome = post.get(f"{n1.ingress_url}/restate/invocation/{long_nap}/attach")
        assert outcome.status_code != 200 and "cancel" in outcome.text.lower(), outcome.text

        # Every row was applied once and deleted.
        wait_for(lambda: cluster.sql("SELECT count(*) FROM mailbox") == "0", TIMEOUT_S, "an empty mailbox")
