"""Free loopback TCP ports chosen at run time, never handed out twice by one test process."""

from __future__ import annotations

import socket
import threading

_HANDED_OUT: set[int] = set()
_LOCK = threading.Lock()
_ATTEMPTS_MAX = 200


def free_port() -> int:
    """Return a loopback port nobody listens on right now and that this process has not returned before."""
    with _LOCK:
        for _ in range(_ATTEMPTS_MAX):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise RuntimeError("no free loopback port found")


def port_accepts(port: int, host: str = "127.0.0.1", timeout_s: float = 0.2) -> bool:
    """True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
