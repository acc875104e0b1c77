"""Official Python SDK (restate-sdk 1.3.0) Virtual Objects for the object compatibility scenarios.

`Tally` exercises the single-writer-per-key rule (read, step, write; a handler held on a gate
file; an ordered log of appends). `Store` and `LazyStore` exercise the K/V state API (state_keys,
clear, clear_all) with eager and with lazy state. Side effects go to the ledger (see ledger.py).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import restate

from tests.compat.services.ledger import gate_path, record

GATE_WAIT_S_MAX = 60.0

tally = restate.VirtualObject("Tally")


async def wait_gate(tag: str) -> None:
    """Block until the gate file of `tag` exists (the test opens it), at most GATE_WAIT_S_MAX."""
    deadline = time.monotonic() + GATE_WAIT_S_MAX
    while not gate_path(tag).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gate {tag} never opened")
        await asyncio.sleep(0.02)


@tally.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    """Read, run a step, then write: a lost update shows up as a final count below the sum."""
    current = await ctx.get("count", type_hint=int) or 0
    await ctx.run("step", lambda: None)
    ctx.set("count", current + delta)
    return current + delta


@tally.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


async def _append(ctx: restate.ObjectContext, item: str) -> int:
    seq: list[str] = await ctx.get("seq", type_hint=list[str]) or []
    seq.append(item)
    ctx.set("seq", seq)
    ctx.set("count", (await ctx.get("count", type_hint=int) or 0) + 1)
    return len(seq)


@tally.handler()
async def hold(ctx: restate.ObjectContext, tag: str) -> int:
    """Hold the key until the gate of `tag` opens, then append "hold" to the log."""
    record(tag, f"hold-start {ctx.key()}")

    async def gated() -> None:
        await wait_gate(tag)

    await ctx.run("gate", gated)
    record(tag, f"hold-end {ctx.key()}")
    return await _append(ctx, "hold")


@tally.handler()
async def touch(ctx: restate.ObjectContext, tag: str) -> str:
    """Record that an exclusive handler of this key started (once per invocation: a step)."""
    await ctx.run("touch", lambda: record(tag, f"touch {ctx.key()}"))
    return ctx.key()


@tally.handler()
async def append(ctx: restate.ObjectContext, req: dict[str, str]) -> int:
    """Append `item` to the key's log (journaled step first); returns the log's new length."""
    item, tag = req["item"], req["tag"]
    await ctx.run("append", lambda: record(tag, f"append {item}"))
    return await _append(ctx, item)


@tally.handler(kind="shared")
async def log(ctx: restate.ObjectSharedContext) -> dict[str, Any]:
    """The ordered log and the counter of this key."""
    seq = await ctx.get("seq", type_hint=list[str]) or []
    return {"seq": seq, "count": await ctx.get("count", type_hint=int) or 0}


def make_store(name: str, lazy: bool) -> restate.VirtualObject:
    """The state-API object; with `lazy` the SDK asks the server for each entry (no eager state)."""
    store = restate.VirtualObject(name)
    opts: dict[str, Any] = {"enable_lazy_state": True} if lazy else {}

    @store.handler(**opts)
    async def put(ctx: restate.ObjectContext, entries: dict[str, Any]) -> None:
        for key, value in entries.items():
            ctx.set(key, value)

    @store.handler(**opts)
    async def clear(ctx: restate.ObjectContext, key: str) -> None:
        ctx.clear(key)

    @store.handler(name="clearAll", **opts)
    async def clear_all(ctx: restate.ObjectContext) -> None:
        ctx.clear_all()

    @store.handler(kind="shared", **opts)
    async def keys(ctx: restate.ObjectSharedContext) -> list[str]:
        return sorted(await ctx.state_keys())

    @store.handler(kind="shared", **opts)
    async def dump(ctx: restate.ObjectSharedContext) -> dict[str, Any]:
        """Every entry of the key as the handler sees it (names sorted)."""
        return {key: await ctx.get(key) for key in sorted(await ctx.state_keys())}

    @store.handler(**opts)
    async def script(ctx: restate.ObjectContext, entries: dict[str, Any]) -> dict[str, Any]:
        """State changes and reads within one invocation: what the handler observes at each step."""
        seen: dict[str, Any] = {"before": sorted(await ctx.state_keys())}
        for key, value in entries.items():
            ctx.set(key, value)
        seen["after_set"] = sorted(await ctx.state_keys())
        first = sorted(entries)[0]
        ctx.clear(first)
        seen["after_clear"] = sorted(await ctx.state_keys())
        seen["cleared_value"] = await ctx.get(first)
        ctx.clear_all()
        seen["after_clear_all"] = sorted(await ctx.state_keys())
        ctx.set("last", "kept")
        seen["final"] = sorted(await ctx.state_keys())
        return seen

    return store


app = restate.app([tally, make_store("Store", lazy=False), make_store("LazyStore", lazy=True)])
