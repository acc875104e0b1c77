"""`perdure dev`'s warm spare app process (perdure/cli_tools/dev_app.py): it knows when a module it
imported early changed under the watched directory (then `perdure dev` starts the app cold), and
it serves the app it is handed once given a port."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from perdure.cli_tools.dev_app import _stale
from tests.support.ports import free_port

ACCEPT = {"accept": "application/vnd.restate.endpointmanifest.v3+json"}

APP = """
import perdure

svc = perdure.Service("{name}")


@svc.handler()
async def hi(ctx: perdure.Context) -> str:
    return "hi"


app = perdure.app(services=[svc])
"""


def test_a_changed_preloaded_module_under_the_watch_makes_the_spare_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "early_mod.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("early_mod")
    since = time.time_ns()
    assert _stale(tmp_path, since) is None
    time.sleep(0.01)
    (tmp_path / "early_mod.py").write_text("X = 2\n")
    assert _stale(tmp_path, since) == str((tmp_path / "early_mod.py").resolve())
    assert _stale(tmp_path / "elsewhere", since) is None
    monkeypatch.delitem(sys.modules, "early_mod")


def test_the_spare_imports_the_app_only_when_given_its_port(tmp_path: Path) -> None:
    (tmp_path / "spareapp.py").write_text(APP.format(name="Before"))
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "perdure.cli_tools.dev_app",
            "spareapp:app",
            "--standby",
            "--watch",
            str(tmp_path),
        ],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
    )
    try:
        time.sleep(0.5)  # the spare has started; the edit comes after it
        (tmp_path / "spareapp.py").write_text(APP.format(name="After"))
        port = free_port()
        assert proc.stdin is not None
        proc.stdin.write(f"{port}\n".encode())
        proc.stdin.close()
        deadline = time.monotonic() + 30
        while True:
            try:
                manifest = httpx.get(f"http://127.0.0.1:{port}/discover", headers=ACCEPT, timeout=2)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.05)
        assert manifest.status_code == 200, manifest.text
        assert [s["name"] for s in manifest.json()["services"]] == ["After"], "the edited module"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
