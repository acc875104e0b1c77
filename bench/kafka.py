"""Kafka benchmark: records per second from topic to completed invocation, Perdure vs the real
Restate server 1.7.12, against the same Tansu broker.

Each round: a fresh server and SDK process, a fresh topic preloaded with N records (3 partitions,
keys spread over K keys), then one subscription (`auto.offset.reset=earliest`). The rate is N over the
time from the first invocation's creation to the last one's completion, both read from
`sys_invocation` (so the consumer-group join is not counted), plus the server's CPU per record.
Rounds alternate the servers. Run: `python -m bench.kafka [--n 5000] [--rounds 2] [--sink object]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx

from bench.procstat import tree_cpu_s
from tests.support import PythonService, make_server, query, register
from tests.support.kafka import FAST_GROUP_OPTIONS, TansuBroker
from tests.support.paths import restate_installed

TIMEOUT_S = 600.0
SINKS = {"service": "service://BenchSink/take", "object": "service://BenchKeyed/take_keyed"}


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _completed(admin_url: str) -> int:
    rows = query(admin_url, "SELECT count(*) AS n FROM sys_invocation WHERE status = 'completed'")
    return int(rows[0]["n"]) if rows else 0


def run_round(
    kind: str, index: int, broker: TansuBroker, args: argparse.Namespace, work: Path
) -> dict[str, float]:
    topic = f"bench-{kind}-{index}-{int(time.time())}"
    broker.create_topic(topic, 3)
    broker.produce(topic, [(f"k{i % args.keys}".encode(), str(i).encode()) for i in range(args.n)])
    server = make_server(kind, work / f"{kind}-{index}")
    sdk = PythonService("bench.kafka_sink", "app", log_dir=work, name=f"kafka-sink-{kind}-{index}")
    with server, sdk:
        register(server.admin_url, sdk.url)
        httpx.post(
            f"{server.admin_url}/kafka-clusters",
            json={"name": "bench", "properties": {"bootstrap.servers": broker.bootstrap}},
        ).raise_for_status()
        cpu0 = tree_cpu_s(server.pid)
        httpx.post(
            f"{server.admin_url}/subscriptions",
            json={
                "source": f"kafka://bench/{topic}",
                "sink": SINKS[args.sink],
                "options": {"auto.offset.reset": "earliest", **FAST_GROUP_OPTIONS},
            },
        ).raise_for_status()
        deadline = time.monotonic() + TIMEOUT_S
        while _completed(server.admin_url) < args.n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind}: not all {args.n} records completed in {TIMEOUT_S}s")
            time.sleep(0.2)
        cpu_s = tree_cpu_s(server.pid) - cpu0
        span = query(
            server.admin_url,
            "SELECT min(created_at) AS first, max(completed_at) AS last FROM sys_invocation",
        )[0]
    elapsed = _ts(span["last"]) - _ts(span["first"])
    return {"records_per_s": args.n / elapsed, "server_cpu_ms_per_record": cpu_s * 1000 / args.n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=3000, help="records per round")
    parser.add_argument("--keys", type=int, default=100, help="distinct record keys")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per server (alternating)")
    parser.add_argument("--sink", choices=sorted(SINKS), default="service")
    parser.add_argument("--servers", default="perdure,restate")
    args = parser.parse_args(argv)
    kinds = [k for k in args.servers.split(",") if k != "restate" or restate_installed()]
    results: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    with (
        tempfile.TemporaryDirectory(prefix="perdure-kafka-bench-") as tmp,
        TansuBroker(Path(tmp) / "kafka") as broker,
    ):
        for index in range(args.rounds):
            for kind in kinds:
                r = run_round(kind, index, broker, args, Path(tmp))
                results[kind].append(r)
                print(
                    f"{kind:8} round {index}: {r['records_per_s']:8.0f} rec/s, "
                    f"server cpu {r['server_cpu_ms_per_record']:.3f} ms/record",
                    flush=True,
                )
    summary = {
        k: {m: statistics.fmean(r[m] for r in rs) for m in ("records_per_s", "server_cpu_ms_per_record")}
        for k, rs in results.items()
    }
    if "perdure" in summary and "restate" in summary:
        summary["perdure/restate"] = {
            m: summary["perdure"][m] / summary["restate"][m] for m in summary["perdure"]
        }
    print(json.dumps({"sink": args.sink, "n": args.n, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
