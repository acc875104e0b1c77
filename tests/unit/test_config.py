"""Settings from Restate's TOML keys, RESTATE_* / PERDURE_* variables and flags; Restate's
duration and size syntax; --dump-config round trip."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from perdure.server.config import Settings
from perdure.server.config_sources import ConfigError, dump_settings, load_settings, restate_env_name
from perdure.server.units import (
    DurationError,
    SizeError,
    format_duration,
    format_size,
    parse_duration_ms,
    parse_size_bytes,
)
from tests.support.paths import perdure_executable


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("500ms", 500),
        ("1m", 60_000),
        ("1h 30m", 5_400_000),
        ("1h30m", 5_400_000),
        ("1 hour, 30 minutes", 5_400_000),
        ("1s 500ms", 1_500),
        ("1.5s", 1_500),
        ("2 days", 172_800_000),
        ("1w", 604_800_000),
        ("250us", 0),
        ("PT2S", 2_000),
        ("P1D", 86_400_000),
        ("PT1H30M", 5_400_000),
        ("PT0.5S", 500),
    ],
)
def test_durations_parse_as_restate_writes_them(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "500", "abc", "5 parsecs", "1 month", "-1s", "P1M", "PT", "1..5s"])
def test_bad_durations_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration_ms(text)


def test_durations_print_as_restate_prints_them() -> None:
    assert [format_duration(ms) for ms in (0, 500, 1_500, 60_000, 86_400_000)] == [
        "0s",
        "500ms",
        "1s 500ms",
        "1m",
        "1d",
    ]


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("32 MiB", 32 * 1024 * 1024),
        ("32.0 MiB", 32 * 1024 * 1024),
        ("1.5 KiB", 1536),
        ("64KB", 64_000),
        ("10 mb", 10_000_000),
        ("1048576", 1_048_576),
        ("512 B", 512),
    ],
)
def test_sizes_parse(text: str, size: int) -> None:
    assert parse_size_bytes(text) == size


@pytest.mark.parametrize("text", ["", "MiB", "32 parsecs", "1 2 MiB", "-5"])
def test_bad_sizes_are_refused(text: str) -> None:
    with pytest.raises(SizeError):
        parse_size_bytes(text)


def test_sizes_print_with_binary_units() -> None:
    assert [format_size(n) for n in (512, 32 * 1024 * 1024, 10 * 1024 * 1024)] == [
        "512 B",
        "32.0 MiB",
        "10.0 MiB",
    ]


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "restate.toml"
    path.write_text(text)
    return path


def test_restate_toml_sets_settings_and_lists_unknown_keys_as_ignored(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        """
        roles = ["worker"]
        default-idempotency-retention = "2h"
        [default-retry-policy]
        initial-interval = "50ms"
        on-max-attempts = "kill"
        [worker.invoker]
        inactivity-timeout = "45s"
        message-size-limit = "8 MiB"
        http2-keep-alive-interval = "40s"
        [worker.invoker.additional-request-headers]
        x-tenant = "acme"
        [ingress]
        bind-address = "127.0.0.1:18080"
        [[ingress.kafka-clusters]]
        name = "main"
        brokers = ["localhost:9092"]
        [perdure]
        query-rows-max = 5
        no-such-thing = 1
        """,
    )
    loaded = load_settings(path, {})
    s = loaded.settings
    assert s.idempotency_retention_ms == 7_200_000
    assert (s.retry_initial_interval_ms, s.retry_on_max_attempts) == (50, "kill")
    assert (s.inactivity_timeout_ms, s.message_size_max_bytes) == (45_000, 8 * 1024 * 1024)
    assert s.additional_request_headers == {"x-tenant": "acme"}
    assert s.ingress == ("127.0.0.1", 18080)
    assert s.kafka_clusters == [{"name": "main", "brokers": ["localhost:9092"]}]
    assert s.query_rows_max == 5
    assert loaded.ignored == ("roles", "worker.invoker.http2-keep-alive-interval", "perdure.no-such-thing")
    assert loaded.sources["inactivity_timeout_ms"] == "file"
    assert loaded.sources["abort_timeout_ms"] == "default"


def test_precedence_is_flags_then_environment_then_file_then_defaults(tmp_path: Path) -> None:
    path = _toml(
        tmp_path,
        """
        [worker.invoker]
        inactivity-timeout = "45s"
        abort-timeout = "2m"
        connect-timeout = "3s"
        """,
    )
    env = {
        "RESTATE_WORKER__INVOKER__ABORT_TIMEOUT": "3m",
        "RESTATE_WORKER__INVOKER__CONNECT_TIMEOUT": "4s",
        "PERDURE_CONNECT_TIMEOUT_MS": "5000",  # PERDURE_* wins over RESTATE_*
        "RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT": "46s",
    }
    loaded = load_settings(path, env, {"inactivity_timeout_ms": "47s", "abort_timeout_ms": None})
    s = loaded.settings
    assert (s.inactivity_timeout_ms, s.abort_timeout_ms, s.connect_timeout_ms) == (47_000, 180_000, 5_000)
    assert s.eager_state_size_max_bytes == Settings().eager_state_size_max_bytes
    assert loaded.sources["abort_timeout_ms"] == "env RESTATE_WORKER__INVOKER__ABORT_TIMEOUT"
    assert loaded.sources["inactivity_timeout_ms"] == "flag"


def test_restate_env_names_nest_with_double_underscores() -> None:
    assert (
        restate_env_name("worker.invoker.inactivity-timeout") == "RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT"
    )
    env = {
        "RESTATE_DEFAULT_RETRY_POLICY__MAX_ATTEMPTS": "12",
        "RESTATE_INGRESS__REQUEST_SIZE_LIMIT": "1 MiB",
        "RESTATE_WORKER__INVOKER__ADDITIONAL_REQUEST_HEADERS__X_TENANT": "acme",
        "RESTATE_ADMIN__BIND_ADDRESS": "127.0.0.1:19070",
        "RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE": "1 GiB",
        "HOME": "/root",
    }
    loaded = load_settings(None, env)
    s = loaded.settings
    assert (s.retry_max_attempts, s.request_size_max_bytes) == (12, 1024 * 1024)
    assert s.additional_request_headers == {"x-restate-cluster-name": "localcluster", "x-tenant": "acme"}
    assert s.admin == ("127.0.0.1", 19070)
    assert loaded.ignored == ("RESTATE_ROCKSDB_TOTAL_MEMORY_SIZE",)


@pytest.mark.parametrize(
    ("toml", "env", "message"),
    [
        ('[worker.invoker]\ninactivity-timeout = "soon"', {}, "worker.invoker.inactivity-timeout"),
        ('[default-retry-policy]\non-max-attempts = "retry"', {}, "pause, kill"),
        ("[worker.invoker]\nconcurrent-invocations-limit = 0", {}, "at least 1"),
        ("", {"RESTATE_INGRESS__REQUEST_SIZE_LIMIT": "huge"}, "RESTATE_INGRESS__REQUEST_SIZE_LIMIT"),
        ("not = [toml", {}, "not valid TOML"),
        ('[perdure]\ningress-tls-cert-file = "/x.pem"', {}, "both a certificate file and a key file"),
    ],
)
def test_bad_values_are_errors_naming_their_source(
    tmp_path: Path, toml: str, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(_toml(tmp_path, toml), env)


def test_dump_config_reads_back_as_the_same_settings(tmp_path: Path) -> None:
    env = {"RESTATE_DEFAULT_RETRY_POLICY__INITIAL_INTERVAL": "50ms", "PERDURE_QUERY_ROWS_MAX": "7"}
    first = load_settings(None, env).settings
    dumped = _toml(tmp_path, dump_settings(first))
    assert load_settings(dumped, {}).settings == first
    assert load_settings(dumped, {}).ignored == ()


def test_perdure_server_dump_config_prints_the_effective_configuration(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[worker.invoker]\ninactivity-timeout = "45s"\n')
    proc = subprocess.run(
        [
            str(perdure_executable()),
            "server",
            "--config-file",
            str(path),
            "--dump-config",
            "--admin-address",
            "127.0.0.1:1",
        ],
        env={"RESTATE_DEFAULT_RETRY_POLICY__INITIAL_INTERVAL": "50ms", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    out = proc.stdout
    assert 'inactivity-timeout = "45s"' in out
    assert 'initial-interval = "50ms"' in out
    assert 'bind-address = "127.0.0.1:1"' in out


def test_perdure_server_refuses_a_bad_configuration_with_exit_code_2(tmp_path: Path) -> None:
    path = _toml(tmp_path, '[worker.invoker]\nabort-timeout = "later"\n')
    proc = subprocess.run(
        [str(perdure_executable()), "server", "--config-file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "worker.invoker.abort-timeout" in proc.stderr
