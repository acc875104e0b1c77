"""The checker: open a crash image with SQLite itself and compare it with what was acknowledged.

The image is opened on a scratch copy, so the directory handed to the recovering server is the
one the power loss left (opening runs SQLite's WAL recovery and may checkpoint on close).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from perdure.protocol.ids import InvocationId
from tests.reliability.powerloss.workload import Ack

DB_FILE = "perdure.sqlite3"
COMPLETED = "completed"


@dataclass(frozen=True, slots=True)
class Stored:
    """An invocation row of the image."""

    invocation_id: str
    status: str
    output: bytes | None  # a completed invocation's value (None for a failure or not completed)
    idempotency_key: str | None


@dataclass(frozen=True, slots=True)
class Verdict:
    problems: list[str]
    stored: dict[str, Stored]  # by invocation id


def _stored(raw_id: bytes, record: bytes) -> Stored:
    d = json.loads(record)
    outcome = d.get("o") or {}
    output = bytes.fromhex(outcome["v"]) if "v" in outcome else None
    return Stored(str(InvocationId.from_raw(raw_id)), d["status"], output, d.get("ik"))


def read_image(image_dir: Path, scratch: Path) -> tuple[list[str], dict[str, Stored], str]:
    """Integrity problems, the invocation rows and the registry document of an image."""
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(image_dir, scratch)
    if not (scratch / DB_FILE).exists():
        return [], {}, ""  # the power cut came before the database was created (or made durable)
    conn = sqlite3.connect(scratch / DB_FILE, isolation_level=None)
    try:
        verdict = [str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchall()]
        problems = [] if verdict == ["ok"] else [f"integrity_check: {'; '.join(verdict[:10])}"]
        # Before the server built its schema (an empty directory at the start), tables may be missing.
        tables = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        rows = conn.execute("SELECT id, record FROM invocation").fetchall() if "invocation" in tables else []
        stored = {s.invocation_id: s for s in (_stored(bytes(i), bytes(r)) for i, r in rows)}
        meta = (
            conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if "meta" in tables
            else None
        )
        schema = "" if meta is None else bytes(meta[0]).decode()
    except sqlite3.DatabaseError as exc:
        return [f"sqlite cannot read the image: {exc}"], {}, ""
    finally:
        conn.close()
    return problems, stored, schema


def check_acks(stored: dict[str, Stored], acks: list[Ack]) -> list[str]:
    """Every 202 has its invocation row; every 200 its completed row with the same output."""
    problems: list[str] = []
    for ack in acks:
        row = stored.get(ack.invocation_id)
        what = f"{'send' if ack.status == 202 else 'call'} {ack.request.rid} ({ack.invocation_id})"
        if row is None:
            problems.append(f"acknowledged {what} is missing")
        elif row.idempotency_key != ack.request.rid:
            problems.append(f"acknowledged {what} is stored with idempotency key {row.idempotency_key}")
        elif ack.status == 200 and row.status != COMPLETED:
            problems.append(f"acknowledged {what} was completed but is stored as {row.status}")
        elif ack.status == 200 and row.output != ack.output:
            problems.append(f"acknowledged {what} answered {ack.output!r} but stored {row.output!r}")
    return problems


def check_image(image_dir: Path, scratch: Path, acks: list[Ack], deployment_id: str | None) -> Verdict:
    """Everything acknowledged before the power loss (the registration of `deployment_id`, if
    answered, and `acks`) must be in the image, which must be sound."""
    problems, stored, schema = read_image(image_dir, scratch)
    if deployment_id is not None and deployment_id not in schema:
        problems.append(f"acknowledged registration of deployment {deployment_id} is missing")
    problems += check_acks(stored, acks)
    return Verdict(problems, stored)
