"""`import perdure` exposes exactly the SDK's public API, lazily."""

from __future__ import annotations

import subprocess
import sys

import perdure
import perdure.sdk


def test_package_all_is_the_sdk_all() -> None:
    assert sorted(perdure.__all__) == sorted(perdure.sdk.__all__)
    for name in perdure.__all__:
        assert getattr(perdure, name) is getattr(perdure.sdk, name)


def test_importing_the_server_does_not_import_the_sdk() -> None:
    code = "import sys, perdure.server.main; print('perdure.sdk' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
