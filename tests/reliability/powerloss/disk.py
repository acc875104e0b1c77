"""What a disk holds after a power loss: the snapshot taken before the run, plus the logged
mutations a fault policy lets survive.

The model is the one POSIX promises and SQLite relies on. A file's content mutation is durable
once an fsync/fdatasync *of that file* that started after it has returned; a name (create,
unlink, rename) once an fsync of the directory has. Anything else may be lost, kept, or (for a
write of several 512-byte sectors) torn: some sectors new, the rest old. Lost name operations
are a suffix of the unsynced ones (file systems journal them in order). The `-shm` file is
never carried over: SQLite rebuilds it when the first connection opens the database.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from tests.reliability.powerloss.fslog import CONTENT_OPS, NAME_OPS, Op, Record

SECTOR_BYTES = 512
REBUILT_SUFFIXES = ("-shm",)


class Fate(Enum):
    KEEP = "keep"
    DROP = "drop"
    TORN = "torn"


# (mutation, is it covered by a barrier that returned?) -> what the disk holds of it
Policy = Callable[[Record, bool], Fate]


@dataclass(slots=True)
class _File:
    content: bytearray
    mutations: list[Record] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Timeline:
    """The log resolved against the snapshot: which file object each mutation touched and
    which mutations a returned barrier covers."""

    initial: dict[str, bytes]
    files_of: dict[int, int]  # mutation seq -> file object
    synced: frozenset[int]  # seqs of mutations covered by a returned barrier
    mutations: tuple[Record, ...]


def timeline(initial: dict[str, bytes], records: Iterable[Record]) -> Timeline:
    """Bind every mutation to the file object its name denoted at that moment."""
    names = {name: i for i, name in enumerate(sorted(initial))}
    next_obj = len(names)
    files_of: dict[int, int] = {}
    cover: dict[int, int] = {}
    dir_cover = 0
    mutations: list[Record] = []
    for r in records:
        if r.op is Op.CREATE:
            names[r.name] = next_obj
            next_obj += 1
        elif r.op is Op.UNLINK:
            names.pop(r.name, None)
        elif r.op is Op.RENAME:
            names[r.data.decode()] = names.pop(r.name)
        elif r.op is Op.SYNC:
            cover[names[r.name]] = max(cover.get(names[r.name], 0), r.arg)
        elif r.op is Op.DIRSYNC:
            dir_cover = max(dir_cover, r.arg)
        if r.op in CONTENT_OPS:
            assert r.name in names, f"write to {r.name}, which the log never created"
            files_of[r.seq] = names[r.name]
        if r.is_mutation:
            mutations.append(r)
    synced = {
        m.seq
        for m in mutations
        if (m.seq < dir_cover if m.op in NAME_OPS else m.seq < cover.get(files_of[m.seq], 0))
    }
    return Timeline(dict(initial), files_of, frozenset(synced), tuple(mutations))


def read_snapshot(directory: Path) -> dict[str, bytes]:
    """The files of a data directory (flat, as Perdure's is)."""
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


def _write(content: bytearray, rec: Record, sectors: set[int] | None) -> None:
    end = rec.off + len(rec.data)
    if len(content) < end:
        content.extend(bytes(end - len(content)))
    if sectors is None:
        content[rec.off : end] = rec.data
        return
    for s in sectors:
        lo, hi = max(rec.off, s * SECTOR_BYTES), min(end, (s + 1) * SECTOR_BYTES)
        content[lo:hi] = rec.data[lo - rec.off : hi - rec.off]


def _sectors(rec: Record) -> list[int]:
    return list(range(rec.off // SECTOR_BYTES, (rec.off + len(rec.data) - 1) // SECTOR_BYTES + 1))


def _torn_sectors(rec: Record, rng: random.Random) -> set[int] | None:
    """A proper, non-empty subset of the write's sectors; None when it spans only one."""
    sectors = _sectors(rec)
    if len(sectors) < 2:
        return None
    return set(rng.sample(sectors, rng.randrange(1, len(sectors))))


def crash_image(tl: Timeline, policy: Policy, rng: random.Random) -> dict[str, bytes]:
    """The files (name -> content) a disk holds after a power loss under `policy`."""
    names = {name: i for i, name in enumerate(sorted(tl.initial))}
    files = {i: _File(bytearray(tl.initial[name])) for name, i in names.items()}
    next_obj = len(names)
    names_lost = False
    for m in tl.mutations:
        fate = policy(m, m.seq in tl.synced)
        if m.op in NAME_OPS:
            if m.op is Op.CREATE:
                files[next_obj] = _File(bytearray())
                obj, next_obj = next_obj, next_obj + 1
            # Name operations survive as an ordered prefix: after the first lost one, all are.
            names_lost = names_lost or fate is not Fate.KEEP
            if names_lost and m.seq not in tl.synced:
                continue
            if m.op is Op.CREATE:
                names[m.name] = obj
            elif m.op is Op.UNLINK:
                names.pop(m.name, None)
            else:
                names[m.data.decode()] = names.pop(m.name)
            continue
        target = files[tl.files_of[m.seq]]
        if fate is Fate.DROP:
            continue
        if m.op is Op.TRUNCATE:
            del target.content[m.arg :]
            if len(target.content) < m.arg:
                target.content.extend(bytes(m.arg - len(target.content)))
        else:
            torn = _torn_sectors(m, rng) if fate is Fate.TORN else None
            if fate is Fate.TORN and torn is None and rng.random() < 0.5:
                continue  # a one-sector write is either there or not
            _write(target.content, m, torn)
    return {
        name: bytes(files[obj].content) for name, obj in names.items() if not name.endswith(REBUILT_SUFFIXES)
    }


def write_image(image: dict[str, bytes], directory: Path) -> None:
    """Materialize a crash image as a fresh data directory."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for name, content in image.items():
        (directory / name).write_bytes(content)


# --- policies: what a disk does with the writes in flight when the power goes ----------------


def synced_only(rec: Record, synced: bool) -> Fate:
    """Everything not covered by a returned fsync is lost."""
    return Fate.KEEP if synced else Fate.DROP


def everything(rec: Record, synced: bool) -> Fate:
    """Nothing is lost (the page cache as the killed process left it)."""
    return Fate.KEEP


def all_but_in_flight(rec: Record, synced: bool) -> Fate:
    """Everything the process finished: the page cache if the call in flight never ran."""
    return Fate.DROP if rec.in_flight else Fate.KEEP


def random_subset(rng: random.Random) -> Policy:
    """Each unsynced mutation independently survives or not (write-back in any order)."""
    return lambda rec, synced: Fate.KEEP if synced or rng.random() < 0.5 else Fate.DROP


def torn(rng: random.Random) -> Policy:
    """Each unsynced mutation survives, is lost, or is torn at sector boundaries."""
    return lambda rec, synced: Fate.KEEP if synced else rng.choice(list(Fate))


def lying_fsync(cutoff_seq: int) -> Policy:
    """A broken disk: it acknowledged every flush from `cutoff_seq` on but kept none of it."""
    return lambda rec, synced: Fate.KEEP if synced and rec.seq < cutoff_seq else Fate.DROP


def lost_write(lost_seq: int) -> Policy:
    """A broken disk: one synced write vanished; otherwise only unsynced work is lost."""
    return lambda rec, synced: Fate.KEEP if synced and rec.seq != lost_seq else Fate.DROP


POLICIES: dict[str, Callable[[random.Random], Policy]] = {
    "synced-only": lambda rng: synced_only,
    "random-subset": random_subset,
    "torn": torn,
}


def page_cache_mismatch(tl: Timeline, live: dict[str, bytes]) -> str | None:
    """Why replaying the whole log does not give the files the killed process left, or None.

    The call in flight at the kill may have run, not run, or (a write) run partly."""
    rng = random.Random(0)
    done = crash_image(tl, all_but_in_flight, rng)
    full = crash_image(tl, everything, rng)
    if live in (done, full):
        return None
    flying = [m for m in tl.mutations if m.in_flight and m.op is Op.WRITE]
    if not flying or set(live) != set(full):
        return f"files differ: live {sorted(live)}, log {sorted(full)}"
    w = flying[0]
    for name in live:
        a, b, got = done[name], full[name], live[name]
        if name != w.name and got != b:
            return f"{name} differs from the log"
        lo, hi = w.off, w.off + len(w.data)
        same_outside = got[:lo] == b[:lo] and got[hi:] == b[hi:]
        inside = all(got[i] in (b[i], a[i] if i < len(a) else 0) for i in range(lo, min(hi, len(got))))
        sized = min(len(a), len(b)) <= len(got) <= max(len(a), len(b))
        if name == w.name and not (sized and same_outside and inside):
            return f"{name} differs from the log beyond the write in flight at {lo}"
    return None
