"""The introspection tables Perdure serves, with Restate 1.7.12's names,
columns and column types (as `information_schema.columns` reports them on the
real server), so the same query gives the same columns on both."""

from __future__ import annotations

from typing import Final

UTF8: Final = "LargeUtf8"
U32: Final = "UInt32"
U64: Final = "UInt64"
BOOL: Final = "Boolean"
TS: Final = 'Timestamp(ms, "+00:00")'
DUR: Final = "Duration(ms)"
BIN: Final = "LargeBinary"
LIST_U32: Final = "List(UInt32)"
LIST_UTF8: Final = "List(LargeUtf8)"
F64: Final = "Float64"

# Columns Restate declares NOT NULL; every other column is nullable.
NOT_NULL: Final = frozenset({("sys_invocation", "status")})

# The run of columns sys_invocation and sys_invocation_status share, in Restate's order.
_LIFECYCLE: Final = (
    ("restarted_from", UTF8),
    ("pinned_deployment_id", UTF8),
    ("pinned_service_protocol_version", U32),
    ("trace_id", UTF8),
    ("journal_size", U32),
    ("journal_commands_size", U32),
    ("created_at", TS),
    ("created_using_restate_version", UTF8),
    ("modified_at", TS),
    ("inboxed_at", TS),
    ("scheduled_at", TS),
    ("scheduled_start_at", TS),
    ("running_at", TS),
    ("completed_at", TS),
    ("completion_retention", DUR),
    ("journal_retention", DUR),
    ("suspended_waiting_for_completions", LIST_U32),
    ("suspended_waiting_for_signals", LIST_U32),
    ("suspended_waiting_future_json", UTF8),
)

# The run of columns the two vqueue entry tables share.
_VQUEUE_ENTRY: Final = (
    ("created_at", TS),
    ("transitioned_at", TS),
    ("num_attempts", U32),
    ("num_errors", U32),
    ("num_pauses", U32),
    ("num_suspensions", U32),
    ("num_yields", U32),
    ("first_attempt_at", TS),
    ("latest_attempt_at", TS),
    ("first_runnable_at", TS),
    ("deployment", UTF8),
)

TABLES: Final[dict[str, tuple[tuple[str, str], ...]]] = {
    "sys_invocation": (
        ("id", UTF8),
        ("vqueue_id", UTF8),
        ("target", UTF8),
        ("target_service_name", UTF8),
        ("target_service_key", UTF8),
        ("target_handler_name", UTF8),
        ("target_service_ty", UTF8),
        ("scope", UTF8),
        ("limit_key", UTF8),
        ("idempotency_key", UTF8),
        ("invoked_by", UTF8),
        ("invoked_by_service_name", UTF8),
        ("invoked_by_id", UTF8),
        ("invoked_by_subscription_id", UTF8),
        ("invoked_by_target", UTF8),
        *_LIFECYCLE,
        ("retry_count", U64),
        ("last_start_at", TS),
        ("next_retry_at", TS),
        ("last_attempt_deployment_id", UTF8),
        ("last_attempt_server", UTF8),
        ("last_failure", UTF8),
        ("last_failure_error_code", UTF8),
        ("last_failure_related_entry_index", U64),
        ("last_failure_related_entry_name", UTF8),
        ("last_failure_related_entry_type", UTF8),
        ("last_failure_related_command_index", U64),
        ("last_failure_related_command_name", UTF8),
        ("last_failure_related_command_type", UTF8),
        ("last_awaiting_on_future_json", UTF8),
        ("status", UTF8),
        ("completion_result", UTF8),
        ("completion_failure", UTF8),
    ),
    "sys_invocation_status": (
        ("partition_key", U64),
        ("id", UTF8),
        ("vqueue_id", UTF8),
        ("status", UTF8),
        ("completion_result", UTF8),
        ("completion_failure", UTF8),
        ("target", UTF8),
        ("target_service_name", UTF8),
        ("target_service_key", UTF8),
        ("target_handler_name", UTF8),
        ("target_service_ty", UTF8),
        ("scope", UTF8),
        ("limit_key", UTF8),
        ("idempotency_key", UTF8),
        ("invoked_by", UTF8),
        ("invoked_by_id", UTF8),
        ("invoked_by_subscription_id", UTF8),
        ("invoked_by_service_name", UTF8),
        ("invoked_by_target", UTF8),
        *_LIFECYCLE,
    ),
    "sys_invocation_state": (
        ("partition_key", U64),
        ("id", UTF8),
        ("in_flight", BOOL),
        ("retry_count", U64),
        ("last_start_at", TS),
        ("last_attempt_deployment_id", UTF8),
        ("last_attempt_server", UTF8),
        ("next_retry_at", TS),
        ("last_failure", UTF8),
        ("last_failure_error_code", UTF8),
        ("last_failure_related_command_index", U64),
        ("last_failure_related_command_name", UTF8),
        ("last_failure_related_command_type", UTF8),
        ("last_failure_related_entry_index", U64),
        ("last_failure_related_entry_name", UTF8),
        ("last_failure_related_entry_type", UTF8),
        ("last_awaiting_on_future_json", UTF8),
    ),
    "sys_journal": (
        ("partition_key", U64),
        ("id", UTF8),
        ("index", U32),
        ("entry_type", UTF8),
        ("name", UTF8),
        ("completed", BOOL),
        ("invoked_id", UTF8),
        ("invoked_target", UTF8),
        ("sleep_wakeup_at", TS),
        ("promise_name", UTF8),
        ("raw", BIN),
        ("raw_length", U64),
        ("version", U32),
        ("entry_json", UTF8),
        ("entry_lite_json", UTF8),
        ("appended_at", TS),
    ),
    "sys_journal_events": (
        ("partition_key", U64),
        ("id", UTF8),
        ("after_journal_entry_index", U32),
        ("appended_at", TS),
        ("event_type", UTF8),
        ("event_json", UTF8),
    ),
    "state": (
        ("partition_key", U64),
        ("scope", UTF8),
        ("service_name", UTF8),
        ("service_key", UTF8),
        ("key", UTF8),
        ("key_length", U64),
        ("value_utf8", UTF8),
        ("value", BIN),
        ("value_length", U64),
    ),
    "sys_inbox": (
        ("partition_key", U64),
        ("service_name", UTF8),
        ("service_key", UTF8),
        ("id", UTF8),
        ("sequence_number", U64),
        ("created_at", TS),
    ),
    "sys_keyed_service_status": (
        ("partition_key", U64),
        ("service_name", UTF8),
        ("service_key", UTF8),
        ("invocation_id", UTF8),
    ),
    "sys_promise": (
        ("partition_key", U64),
        ("scope", UTF8),
        ("service_name", UTF8),
        ("service_key", UTF8),
        ("key", UTF8),
        ("completed", BOOL),
        ("completion_success_value", BIN),
        ("completion_success_value_utf8", UTF8),
        ("completion_failure", UTF8),
    ),
    "sys_service": (
        ("name", UTF8),
        ("revision", U64),
        ("public", BOOL),
        ("ty", UTF8),
        ("deployment_id", UTF8),
    ),
    "sys_deployment": (
        ("id", UTF8),
        ("ty", UTF8),
        ("endpoint", UTF8),
        ("created_at", TS),
        ("min_service_protocol_version", U32),
        ("max_service_protocol_version", U32),
        ("services", LIST_UTF8),
    ),
    "sys_locks": (
        ("partition_key", U64),
        ("scope", UTF8),
        ("lock_name", UTF8),
        ("acquired_at", TS),
        ("acquired_by", UTF8),
    ),
    "sys_rules": (
        ("pattern", UTF8),
        ("concurrency", U32),
        ("description", UTF8),
        ("disabled", BOOL),
        ("version", U32),
        ("last_modified", TS),
    ),
    "sys_scheduler": (
        ("partition_key", U64),
        ("id", UTF8),
        ("num_inbox", U64),
        ("status", UTF8),
        ("head_entry_id", UTF8),
        ("scheduled_at", TS),
        ("blocked_on", UTF8),
        ("blocked_on_json", UTF8),
        ("invoker_concurrency_block_duration", DUR),
        ("throttling_rules_block_duration", DUR),
        ("invoker_throttling_block_duration", DUR),
        ("invoker_memory_block_duration", DUR),
        ("concurrency_rules_block_duration", DUR),
        ("lock_block_duration", DUR),
        ("deployment_concurrency_block_duration", DUR),
    ),
    "sys_user_limits": (
        ("partition_key", U64),
        ("scope", UTF8),
        ("l1", UTF8),
        ("l2", UTF8),
        ("level", UTF8),
        ("usage", U32),
        ("concurrency_limit", U32),
        ("rule_pattern", UTF8),
        ("available", U32),
        ("num_waiters", U64),
    ),
    "sys_vqueue_entry_status": (
        ("partition_key", U64),
        ("entry_id", UTF8),
        ("vqueue_id", UTF8),
        ("stage", UTF8),
        ("status", UTF8),
        ("has_lock", BOOL),
        ("next_at", TS),
        ("sequence_number", U64),
        ("entry_kind", UTF8),
        *_VQUEUE_ENTRY,
        ("needed_memory", U64),
        ("retry_attempts", U32),
        ("retry_count_since_last_stored_command", U32),
        ("latest_attempt_blocked_on_invoker_concurrency", DUR),
        ("latest_attempt_blocked_on_throttling_rules", DUR),
        ("latest_attempt_blocked_on_invoker_throttling", DUR),
        ("latest_attempt_blocked_on_invoker_memory", DUR),
        ("latest_attempt_blocked_on_concurrency_rules", DUR),
        ("latest_attempt_blocked_on_lock", DUR),
        ("latest_attempt_blocked_on_deployment_concurrency", DUR),
        ("total_blocked_on_invoker_concurrency", DUR),
        ("total_blocked_on_throttling_rules", DUR),
        ("total_blocked_on_invoker_throttling", DUR),
        ("total_blocked_on_invoker_memory", DUR),
        ("total_blocked_on_concurrency_rules", DUR),
        ("total_blocked_on_lock", DUR),
        ("total_blocked_on_deployment_concurrency", DUR),
    ),
    "sys_vqueue_meta": (
        ("partition_key", U64),
        ("id", UTF8),
        ("is_active", BOOL),
        ("queue_is_paused", BOOL),
        ("service_name", UTF8),
        ("scope", UTF8),
        ("limit_key", UTF8),
        ("lock_name", UTF8),
        ("created_at", TS),
        ("last_enqueued_at", TS),
        ("last_start_at", TS),
        ("last_attempt_at", TS),
        ("last_finish_at", TS),
        ("avg_queue_duration", DUR),
        ("avg_inbox_duration", DUR),
        ("avg_run_duration", DUR),
        ("avg_suspension_duration", DUR),
        ("avg_end_to_end_duration", DUR),
        ("avg_blocked_on_concurrency_rules", DUR),
        ("avg_blocked_on_invoker_concurrency", DUR),
        ("avg_blocked_on_invoker_throttling", DUR),
        ("avg_blocked_on_lock", DUR),
        ("num_inbox", U64),
        ("num_running", U64),
        ("num_suspended", U64),
        ("num_paused", U64),
        ("num_finished", U64),
    ),
    "sys_vqueues": (
        ("partition_key", U64),
        ("id", UTF8),
        ("stage", UTF8),
        ("status", UTF8),
        ("has_lock", BOOL),
        ("run_at", TS),
        ("sequence_number", U64),
        ("entry_id", UTF8),
        ("entry_kind", UTF8),
        *_VQUEUE_ENTRY,
    ),
    # Perdure's own (Restate has no rate limits): every rule with its live usage and token bucket.
    "perdure_limits": (
        ("pattern", UTF8),
        ("disabled", BOOL),
        ("concurrency", U32),
        ("running", U64),
        ("waiting", U64),
        ("rate_per_s", F64),
        ("burst", U32),
        ("next_start_at", TS),
    ),
}


def column_types() -> dict[str, str]:
    """Type of each column name, when every table that has the name agrees on it
    (how a result column is typed when the query does not rename it)."""
    seen: dict[str, set[str]] = {}
    for columns in TABLES.values():
        for name, ty in columns:
            seen.setdefault(name, set()).add(ty)
    return {name: next(iter(tys)) for name, tys in seen.items() if len(tys) == 1}


def information_schema_rows() -> list[tuple[str, str, str, str, int, str, str, int | None]]:
    """Rows of `information_schema.columns`: catalog, schema, table, column,
    ordinal position, nullability, data type, octet length."""
    rows = []
    for table, columns in TABLES.items():
        for pos, (name, ty) in enumerate(columns):
            nullable = "NO" if (table, name) in NOT_NULL else "YES"
            octets = 9223372036854775807 if ty in (UTF8, BIN) else None
            rows.append(("restate", "public", table, name, pos, nullable, ty, octets))
    return rows
