"""How long `perdure dev` takes from an edit of the served module to the new code answering.

    .venv/bin/python -m bench.dev_reload --rounds 8

Starts `perdure dev devapp:app` on a module in a temporary directory, then edits it `--rounds`
times (a new VERSION each time) and polls `DevReload/which` every 10 ms until the new version
answers. Prints each round's edit-to-answer time with the phases `perdure dev` reports on its
`reloaded` line (change seen, app process ready, registration), then the median and the worst.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

from tests.support.paths import perdure_executable
from tests.support.ports import free_port

APP = """
import perdure

VERSION = "{version}"
svc = perdure.Service("DevReload")


@svc.handler()
async def which(ctx: perdure.Context) -> str:
    return VERSION


app = perdure.app(services=[svc])
"""
ANSWER_TIMEOUT_S = 60.0
POLL_S = 0.01
SETTLE_S = 1.0  # between rounds, so that one reload is not measured inside the next


def which(client: httpx.Client, ingress: int) -> str | None:
    try:
        resp = client.post(f"http://127.0.0.1:{ingress}/DevReload/which", timeout=5)
    except httpx.HTTPError:
        return None
    return str(resp.json()) if resp.status_code == 200 else None


def wait_for(client: httpx.Client, ingress: int, version: str) -> float:
    start = time.monotonic()
    while which(client, ingress) != version:
        if time.monotonic() - start > ANSWER_TIMEOUT_S:
            raise TimeoutError(f"{version} never answered")
        time.sleep(POLL_S)
    return time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="perdure-dev-bench-") as tmp:
        root = Path(tmp)
        module = root / "devapp.py"
        module.write_text(APP.format(version="v0"))
        ingress, admin, service = free_port(), free_port(), free_port()
        proc = subprocess.Popen(
            [
                str(perdure_executable()), "dev", "devapp:app", "--watch", str(root),
                "--service-port", str(service), "--data-dir", str(root / "data"),
                "--ingress-address", f"127.0.0.1:{ingress}", "--admin-address", f"127.0.0.1:{admin}",
            ],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        lines: list[str] = []
        out = proc.stdout
        assert out is not None
        reader = threading.Thread(target=lambda: lines.extend(iter(out.readline, "")), daemon=True)
        reader.start()
        results = []
        try:
            with httpx.Client() as client:
                wait_for(client, ingress, "v0")
                for i in range(1, args.rounds + 1):
                    time.sleep(SETTLE_S)
                    module.write_text(APP.format(version=f"v{i}"))
                    took = wait_for(client, ingress, f"v{i}")
                    phases = next((ln for ln in reversed(lines) if "reloaded in" in ln), "")
                    results.append({"round": i, "edit_to_answer_s": round(took, 3), "phases": phases.strip()})
                    print(f"round {i}: {took:.3f} s  {_phases(phases)}", flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    times = [r["edit_to_answer_s"] for r in results]
    print(f"median {statistics.median(times):.3f} s, worst {max(times):.3f} s over {len(times)} edits")
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))


def _phases(line: str) -> str:
    m = re.search(r"reloaded in .*?\)", line)
    return m.group(0) if m else ""


if __name__ == "__main__":
    main()
