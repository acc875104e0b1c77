"""Shared pieces of the compatibility suites: the per-module workspace (ledger, gates, logs)
that test services write to, fresh tags, and the check of Restate-shaped ingress errors."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.compat.services.ledger import GATE_DIR_ENV, LABEL_ENV, LEDGER_ENV, Ledger
from tests.support import PythonService

CORE_MODULE = "tests.compat.services.core"
ERROR_HEADER = "x-restate-error-source"


@dataclass
class Workspace:
    """Per-module files shared with the service processes: the ledger, the gate directory, logs."""

    root: Path

    @property
    def ledger(self) -> Ledger:
        return Ledger(self.root / "ledger.txt")

    @property
    def gates(self) -> Path:
        return self.root / "gates"

    def env(self, label: str) -> dict[str, str]:
        return {LEDGER_ENV: str(self.ledger.path), GATE_DIR_ENV: str(self.gates), LABEL_ENV: label}

    def open_gate(self, tag: str) -> None:
        (self.gates / tag).touch()

    def python_service(self, app_attr: str, label: str, module: str = CORE_MODULE) -> PythonService:
        return PythonService(
            module, app_attr, env=self.env(label), log_dir=self.root, name=f"{app_attr}-{label}"
        )


def new_tag() -> str:
    return uuid.uuid4().hex[:12]


def assert_ingress_error(resp: httpx.Response, status: int, message: str, source: str = "ingress") -> None:
    """An ingress error: the status, JSON `{code, message, source}`, and the error-source header."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["code"] == status
    assert body["message"] == message
    assert body.get("source") == source
    assert resp.headers.get(ERROR_HEADER) == source
