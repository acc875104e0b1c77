"""Load generator, run in its own process so its CPU is not charged to the server.

A raw asyncio HTTP/1.1 keep-alive client: C connections, each sending one request at a time,
until N requests are done. Protocol with the parent: after the warm-up it prints `ready`, waits
for a line on stdin, runs the measured phase and prints one JSON line with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field

HEAD_BYTES_MAX = 64 * 1024
RESPONSE_TIMEOUT_S = 30.0


class BadResponse(Exception):
    """The server answered something this client does not understand or a non-200 status."""


@dataclass
class Phase:
    """Shared state of one phase: how many requests remain, latencies and errors seen."""

    remaining: int
    latencies_s: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None

    def take(self) -> bool:
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True

    def fail(self, exc: BaseException) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = repr(exc)


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one HTTP/1.1 response (content-length or chunked body); return status and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > HEAD_BYTES_MAX:
        raise BadResponse("response head too large")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        return status, await reader.readexactly(int(headers["content-length"]))
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).strip().split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
    return status, b""


async def connection_loop(host: str, port: int, request: bytes, phase: Phase) -> None:
    """One keep-alive connection issuing requests until the phase has none left."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while phase.take():
            started = time.perf_counter()
            try:
                writer.write(request)
                async with asyncio.timeout(RESPONSE_TIMEOUT_S):
                    status, body = await read_response(reader)
                if status != 200:
                    raise BadResponse(f"status {status}: {body[:200]!r}")
            except (OSError, asyncio.IncompleteReadError, TimeoutError, BadResponse, ValueError) as exc:
                phase.fail(exc)
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            phase.latencies_s.append(time.perf_counter() - started)
    finally:
        writer.close()


async def run_phase(
    host: str, port: int, path: str, body: bytes, count: int, concurrency: int
) -> tuple[Phase, float]:
    """`{c}` in the path is the connection's index (a virtual-object key of its own)."""
    phase = Phase(remaining=count)
    started = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for c in range(min(concurrency, count)):
            request = build_request(host, port, path.replace("{c}", str(c)), body)
            tg.create_task(connection_loop(host, port, request, phase))
    return phase, time.perf_counter() - started


def percentile_ms(sorted_s: list[float], q: float) -> float:
    if not sorted_s:
        return float("nan")
    index = min(len(sorted_s) - 1, round(q * (len(sorted_s) - 1)))
    return sorted_s[index] * 1000.0


def summarize(phase: Phase, elapsed_s: float) -> dict[str, object]:
    lat = sorted(phase.latencies_s)
    return {
        "ok": len(lat),
        "errors": phase.errors,
        "first_error": phase.first_error,
        "elapsed_s": elapsed_s,
        "throughput_per_s": len(lat) / elapsed_s if elapsed_s > 0 else 0.0,
        "p50_ms": percentile_ms(lat, 0.50),
        "p90_ms": percentile_ms(lat, 0.90),
        "p99_ms": percentile_ms(lat, 0.99),
        "max_ms": lat[-1] * 1000.0 if lat else float("nan"),
    }


async def main_async(args: argparse.Namespace) -> None:
    body = args.body.encode()
    if args.warmup > 0:
        warm, _ = await run_phase(args.host, args.port, args.path, body, args.warmup, args.concurrency)
        if warm.errors:
            print(f"warm-up errors: {warm.errors} first: {warm.first_error}", file=sys.stderr)
    print("ready", flush=True)
    sys.stdin.readline()  # the parent samples CPU counters, then says go
    phase, elapsed_s = await run_phase(args.host, args.port, args.path, body, args.n, args.concurrency)
    print(json.dumps(summarize(phase, elapsed_s)), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/Greeter/greet")
    parser.add_argument("--body", default='"Sarah"')
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(main_async(args))
    except ImportError:
        asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
