"""Server settings: one typed object, filled from flags and PERDURE_* env vars
(see `perdure server --help`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

VERSION = "1.7.12"  # the Restate admin API level we implement; reported by /version
PERDURE_VERSION = "0.1.0"


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, got '{text}'")
    return (host or "0.0.0.0").strip("[]"), int(port)


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path = Path("perdure-data")
    ingress_address: str = "127.0.0.1:8080"
    admin_address: str = "127.0.0.1:9070"
    request_size_max_bytes: int = 32 * 1024 * 1024
    message_size_max_bytes: int = 32 * 1024 * 1024
    concurrent_invocations_max: int = 1_000  # as Restate's concurrent-invocations-limit
    # An attempt waiting on the server this long, while others wait for a slot, is
    # parked (suspended) to make room; parked attempts still winding down are bounded.
    attempt_park_idle_ms: int = 250
    attempts_parked_max: int = 10_000
    query_time_limit_s: float = 10.0
    query_rows_max: int = 100_000
    log_level: str = "info"

    @property
    def ingress(self) -> tuple[str, int]:
        return parse_address(self.ingress_address)

    @property
    def admin(self) -> tuple[str, int]:
        return parse_address(self.admin_address)
