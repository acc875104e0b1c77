"""CPU time and peak memory of a process tree, read from /proc (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    ppid: int
    cpu_ticks: int  # utime + stime + cutime + cstime: own threads and reaped children


def _read_stat(pid: int) -> ProcStat | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Fields after the parenthesised command name, which may itself hold spaces or ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return ProcStat(pid, ppid, utime + stime + cutime + cstime)


def _all_stats() -> dict[int, ProcStat]:
    stats: dict[int, ProcStat] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read_stat(int(entry))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def tree_pids(root_pid: int) -> list[int]:
    """`root_pid` and all its live descendants."""
    stats = _all_stats()
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    out, todo = [], [root_pid]
    while todo:
        pid = todo.pop()
        if pid in stats:
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def tree_cpu_s(root_pid: int) -> float:
    """CPU seconds (user + system) consumed so far by the tree rooted at `root_pid`."""
    ticks = 0
    for pid in tree_pids(root_pid):
        stat = _read_stat(pid)
        if stat is not None:
            ticks += stat.cpu_ticks
    return ticks / CLOCK_TICKS_PER_S


def _tree_status_kib(root_pid: int, field: str) -> int:
    total_kib = 0
    for pid in tree_pids(root_pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for line in status.splitlines():
            if line.startswith(field):
                total_kib += int(line.split()[1])
    return total_kib


def tree_peak_rss_bytes(root_pid: int) -> int:
    """Sum over the tree of each process's peak resident set size (VmHWM)."""
    return _tree_status_kib(root_pid, "VmHWM:") * 1024


def tree_rss_bytes(root_pid: int) -> int:
    """Sum over the tree of each process's resident set size now (VmRSS)."""
    return _tree_status_kib(root_pid, "VmRSS:") * 1024


def tree_write_bytes(root_pid: int) -> int:
    """Bytes the tree's live processes caused to be written to storage (`write_bytes` of
    /proc/PID/io: the page cache flushes and fsyncs a database and its WAL amount to)."""
    total = 0
    for pid in tree_pids(root_pid):
        try:
            io = Path(f"/proc/{pid}/io").read_text()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        for line in io.splitlines():
            if line.startswith("write_bytes:"):
                total += int(line.split()[1])
    return total
