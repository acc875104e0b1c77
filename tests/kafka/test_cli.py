"""The official `restate` CLI 1.7.12's `kafka-clusters` and `subscriptions` commands against both
servers: create, list, describe, patch and delete answer with the same facts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.kafka.support import Sinks
from tests.support.cli import restate_cli

pytestmark = pytest.mark.kafka


def restate(sinks: Sinks, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    out = restate_cli(sinks.server, home, *args, extra_env={"CI": "true", "COLUMNS": "250"})
    assert out.returncode == 0, f"restate {' '.join(args)}: {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out


def test_kafka_clusters_commands(sinks: Sinks, tmp_path: Path) -> None:
    bs = sinks.broker.bootstrap
    restate(sinks, tmp_path, "kc", "create", "clicluster", f"bootstrap.servers={bs}", "sasl.password=hunter2")
    listed = restate(sinks, tmp_path, "kc", "list").stdout
    assert "clicluster" in listed and "local" in listed
    described = restate(sinks, tmp_path, "kc", "describe", "clicluster").stdout
    assert bs in described and "hunter2" not in described and "***" in described
    restate(
        sinks, tmp_path, "kc", "patch", "clicluster", "--set", "client.id=cli", "--unset", "sasl.password"
    )
    described = restate(sinks, tmp_path, "kc", "describe", "clicluster").stdout
    assert "client.id" in described and "sasl.password" not in described
    restate(sinks, tmp_path, "kc", "delete", "clicluster", "--yes")
    assert "clicluster" not in restate(sinks, tmp_path, "kc", "list").stdout


def test_subscriptions_commands(sinks: Sinks, tmp_path: Path) -> None:
    topic = sinks.topic(1)
    source = f"kafka://local/{topic}"
    created = restate(
        sinks, tmp_path, "sub", "create", source, "service://KCounter/add", "auto.offset.reset=earliest"
    )
    subs = sinks.server_subscriptions(source)
    assert len(subs) == 1, created.stdout
    sub_id = subs[0]["id"]
    assert sub_id in restate(sinks, tmp_path, "sub", "list").stdout
    described = restate(sinks, tmp_path, "sub", "describe", sub_id).stdout
    assert source in described and "service://KCounter/add" in described and "earliest" in described
    restate(sinks, tmp_path, "sub", "delete", sub_id, "--yes")
    assert sinks.server_subscriptions(source) == []
