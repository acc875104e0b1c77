"""Builds the LD_PRELOAD recorder (shim.c) with gcc and says how to load it into a process."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("shim.c")
BUILD_TIMEOUT_S = 60.0


class RecorderUnavailable(RuntimeError):
    """No C compiler here, or the shim did not build."""


def build_recorder(out_dir: Path) -> Path:
    """Compile shim.c into `out_dir`/powerloss-recorder.so and return its path."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RecorderUnavailable("gcc is not installed")
    out = out_dir / "powerloss-recorder.so"
    argv = [
        gcc,
        "-shared",
        "-fPIC",
        "-O2",
        "-Wall",
        "-Werror",
        "-o",
        str(out),
        str(SOURCE),
        "-ldl",
        "-lpthread",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RecorderUnavailable(f"gcc failed:\n{done.stderr}")
    return out


def recorder_env(library: Path, watched_dir: Path, log_path: Path) -> dict[str, str]:
    """Environment that loads the recorder, watching `watched_dir` (canonical) into `log_path`."""
    return {
        "LD_PRELOAD": str(library),
        "PERDURE_PL_DIR": str(watched_dir.resolve()),
        "PERDURE_PL_LOG": str(log_path),
    }
