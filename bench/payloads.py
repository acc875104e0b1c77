"""Big payloads and long journals, side by side on Perdure and the real Restate server.

    python -m bench.payloads --mb 30 --steps 1000 --repeat 3

Per server (fresh server and SDK process each): a `--mb` MB string echoed through one `ctx.run`
(input, run result and output all that big), then a `--steps`-step invocation right after it (a big
write must not stall the commits that follow), then a `--mb` MB state value written and read back,
then `--small` calls that read and write a small state value on the object keys stored right
beside the big one (`Blob/b0-0` .. `Blob/b0-9` next to `Blob/b0`). Each is timed from the client;
the table shows the median of `--repeat` runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support import PythonService, make_server, register
from tests.support.paths import restate_installed

TIMEOUT_S = 600.0


def timed(client: httpx.Client, url: str, body: object) -> float:
    t0 = time.monotonic()
    resp = client.post(url, json=body, timeout=TIMEOUT_S)
    if resp.status_code != 200:
        raise RuntimeError(f"{url}: {resp.status_code} {resp.text[:200]}")
    return time.monotonic() - t0


def run_one(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, float | str]:
    server = make_server(kind, workdir / f"{kind}-data")
    svc = PythonService("bench.payload_service", "app", log_dir=workdir, name=f"payloads-{kind}")
    big = "x" * (args.mb * 1024 * 1024)
    rows: dict[str, list[float]] = {
        "echo_s": [],
        "steps_after_s": [],
        "state_put_s": [],
        "state_get_s": [],
        "small_beside_s": [],
    }
    with server, svc, httpx.Client(base_url=server.ingress_url) as client:
        register(server.admin_url, svc.url)
        timed(client, "/Steps/many", 10)  # warm-up
        for i in range(args.repeat):
            rows["echo_s"].append(timed(client, "/Echo/run", big))
            rows["steps_after_s"].append(timed(client, "/Steps/many", args.steps))
            rows["state_put_s"].append(timed(client, f"/Blob/b{i}/put", big))
            rows["state_get_s"].append(timed(client, f"/Blob/b{i}/size", None))
            t0 = time.monotonic()
            for j in range(args.small):
                timed(client, f"/Blob/b{i}-{j % 10}/bump", None)
            rows["small_beside_s"].append(time.monotonic() - t0)
    out: dict[str, float | str] = {"server": kind}
    out.update({k: statistics.median(v) for k, v in rows.items()})
    out.update({f"{k}_max": max(v) for k, v in rows.items()})
    return out


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--mb", type=int, default=30)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small", type=int, default=200, help="small state calls beside the big value")
    parser.add_argument("--servers", default="perdure,restate")
    args = parser.parse_args(argv)
    kinds = [k for k in args.servers.split(",") if k and (k != "restate" or restate_installed())]
    results = []
    with tempfile.TemporaryDirectory(prefix="perdure-payloads-") as tmp:
        for kind in kinds:
            print(f"{kind}: {args.mb} MB echo, {args.steps} steps, state …", file=sys.stderr, flush=True)
            results.append(run_one(kind, args, Path(tmp)))
    keys = ("echo_s", "steps_after_s", "steps_after_s_max", "state_put_s", "state_get_s", "small_beside_s")
    print(f"{'server':8} " + " ".join(f"{k:>18}" for k in keys))
    for r in results:
        print(f"{r['server']!s:8} " + " ".join(f"{float(r[k]):18.2f}" for k in keys))
    print(json.dumps({"mb": args.mb, "steps": args.steps, "small": args.small, "rows": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
