"""The recorder's log (written by shim.c): every mutation of the data directory and every fsync.

Records are read back in `seq` order, with paths made relative to the watched directory so a
log can be replayed onto a copy of it anywhere.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from enum import IntEnum
from pathlib import Path

HEADER = struct.Struct("<IIQQqqII")
MAGIC = 0x504C5752


class Op(IntEnum):
    WRITE = 1
    TRUNCATE = 2
    SYNC = 3
    CREATE = 4
    UNLINK = 5
    RENAME = 6
    DIRSYNC = 7
    OPEN_SYNC = 8
    DONE = 9


CONTENT_OPS = frozenset({Op.WRITE, Op.TRUNCATE})
NAME_OPS = frozenset({Op.CREATE, Op.UNLINK, Op.RENAME})


@dataclass(frozen=True, slots=True)
class Record:
    """One logged call. For SYNC/DIRSYNC, `arg` is the first seq the barrier does *not* cover.
    A mutation is `in_flight` when the kill came before its result was logged."""

    op: Op
    seq: int
    t_ns: int
    name: str
    off: int
    arg: int
    data: bytes
    in_flight: bool = False

    @property
    def is_mutation(self) -> bool:
        return self.op in CONTENT_OPS or self.op in NAME_OPS


def _relative(path: str, root: str) -> str:
    if path == root:
        return "."
    assert path.startswith(root + "/"), f"{path} is not under {root}"
    return path[len(root) + 1 :]


def _settle(records: list[Record]) -> list[Record]:
    """Fold each DONE into the mutation logged just before it: drop failed calls, cut short
    writes; a mutation without a DONE (the kill came first) is in flight."""
    out: list[Record] = []
    for i, r in enumerate(records):
        if r.op is Op.DONE:
            continue
        if not r.is_mutation:
            out.append(r)
            continue
        done = records[i + 1] if i + 1 < len(records) else None
        if done is None or done.op is not Op.DONE:
            assert done is None, f"mutation {r.seq} has no result but is not the last record"
            out.append(replace(r, in_flight=True))
        elif done.arg >= 0 and not (r.op is Op.WRITE and done.arg == 0):
            out.append(replace(r, data=r.data[: done.arg]) if r.op is Op.WRITE else r)
    return out


def read_log(log_path: Path, root: Path) -> list[Record]:
    """All complete records of the log, names relative to `root` (the watched directory)."""
    raw = log_path.read_bytes() if log_path.exists() else b""
    base = str(root)
    records: list[Record] = []
    pos = 0
    while pos + HEADER.size <= len(raw):
        magic, op, seq, t_ns, off, arg, path_len, data_len = HEADER.unpack_from(raw, pos)
        assert magic == MAGIC, f"corrupt recorder log at byte {pos}"
        end = pos + HEADER.size + path_len + data_len
        if end > len(raw):
            break  # a record cut by the kill: its call never returned to the server either
        name_end = pos + HEADER.size + path_len
        name = raw[pos + HEADER.size : name_end].decode()
        data = raw[name_end:end]
        if Op(op) is Op.RENAME:
            data = _relative(data.decode(), base).encode()
        records.append(Record(Op(op), seq, t_ns, _relative(name, base), off, arg, data))
        pos = end
    records.sort(key=lambda r: r.seq)
    return _settle(records)
