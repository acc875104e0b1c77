"""`perdure cluster`: the nodes and the partitions of the cluster (`GET /cluster`): each node's
liveness and share, each partition's owner, epoch, last batch and lease ages (database clock)."""

from __future__ import annotations

from typing import Any

from perdure.cli_tools.options import ADMIN_URL_DEFAULT, AdminUrl, JsonOut
from perdure.cli_tools.output import admin_session, print_json, print_table, stdout


def _seconds(value: Any) -> str:
    return "" if value is None else f"{float(value):.1f}"


def cluster(admin_url: AdminUrl = ADMIN_URL_DEFAULT, json_out: JsonOut = False) -> None:
    """The cluster's nodes and partitions (owner, epoch, last batch, lease age and expiry). With
    --json: the `GET /cluster` document as it is."""
    with admin_session(admin_url) as admin:
        status = admin.get("/cluster")
    if json_out:
        print_json(status)
        return
    stdout.print(
        f"store {status.get('store')}, {status.get('partitions_total', 0)} partitions, "
        f"asked node {status.get('node')}"
    )
    nodes = [
        {
            "node": n.get("name"),
            "live": "" if n.get("live") is None else ("yes" if n["live"] else "no"),
            "partitions": n.get("partitions", 0),
            "heartbeat_age_s": _seconds(n.get("heartbeat_age_s")),
            "address": n.get("address") or "",
        }
        for n in status.get("nodes", [])
    ]
    print_table(nodes, ["node", "live", "partitions", "heartbeat_age_s", "address"], title="nodes")
    parts = [
        {
            "partition": p["partition"],
            "owner": p.get("owner") or "",
            "epoch": p.get("epoch"),
            "last_batch": p.get("last_batch"),
            "lease_age_s": _seconds(p.get("lease_age_s")),
            "expires_in_s": _seconds(p.get("lease_expires_in_s")),
        }
        for p in status.get("partitions", [])
    ]
    if parts:
        columns = ["partition", "owner", "epoch", "last_batch", "lease_age_s", "expires_in_s"]
        print_table(parts, columns, title="partitions")
