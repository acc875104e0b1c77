"""CPU of the invoker's HTTP/2 client per stream, apart from the rest of the server.

    .venv/bin/python -m bench.h2client --streams 3000 --rounds 3

The hypercorn echo app of the h2 client's tests (`tests.unit.test_h2client`, its own process)
answers streams shaped like an invocation's: the request stays open, two request chunks each
answered by a response chunk, then the end. The client's process CPU time (this process: the event
loop, `h2connection`, the h2 library) is divided by the streams; the echo server's CPU is not
counted. Compare trees with PYTHONPATH=TREE.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from perdure.server.invoker.h2client import H2Client
from tests.support import PythonService

HEADERS = [("content-type", "application/vnd.restate.invocation.v5"), ("x-restate-invocation-id", "inv_1")]
CHUNK = b"\x00" * 120


async def _stream(client: H2Client, url: str) -> None:
    stream = await client.request(url, "POST", HEADERS)
    stream.send(CHUNK)
    await stream.response()
    got = 0
    while got < len(CHUNK):
        got += len(await stream.receive())
    stream.send(CHUNK)
    stream.end()
    while await stream.receive():
        pass


async def _round(url: str, streams: int, concurrency: int) -> float:
    client = H2Client()
    try:
        sem = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with sem:
                await _stream(client, url)

        async with asyncio.TaskGroup() as tg:  # warm the connections
            for _ in range(concurrency):
                tg.create_task(one())
        t0 = time.process_time()
        async with asyncio.TaskGroup() as tg:
            for _ in range(streams):
                tg.create_task(one())
        return (time.process_time() - t0) / streams * 1e6
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    import uvloop

    with PythonService("tests.unit.test_h2client", "app", hypercorn_args=["--worker-class", "uvloop"]) as svc:
        url = f"{svc.url}/echo"
        per = [uvloop.run(_round(url, args.streams, args.concurrency)) for _ in range(args.rounds)]
    each = ", ".join(f"{p:.1f}" for p in per)
    print(f"client CPU per stream: median {statistics.median(per):.1f} us ({each})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
