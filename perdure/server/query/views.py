"""The introspection views: Restate's tables as TEMP VIEWs over Perdure's store.

Each view is written as one SQL expression per column (in `tables.TABLES`
order, checked at build time), so a column is defined once and the three
invocation views share their expressions. Timestamps are RFC 3339 text and
durations ISO text, as Restate renders them in JSON; the encoder types them
for Arrow from the column catalogue."""

from __future__ import annotations

from collections.abc import Mapping

from perdure.server.query.tables import TABLES

# The invocation record, as JSON text (stored as a blob by the processor).
R = "CAST(i.record AS TEXT)"
ATTEMPT_STATUSES = "('invoked', 'paused')"  # raw statuses that have invoker state


def rec(path: str) -> str:
    return f"json_extract({R}, '$.{path}')"


def _entry(alias: str, name: str) -> str:
    return f"perdure_entry({alias}.type, {alias}.body, '{name}')"


def _when_attempts(expr: str) -> str:
    return f"CASE WHEN i.status IN {ATTEMPT_STATUSES} THEN {expr} END"


def _failure_text(path: str) -> str:
    """`[409] cancelled` from a stored `[code, message]` pair."""
    code, message = rec(path + "[0]"), rec(path + "[1]")
    return f"CASE WHEN {rec(path)} IS NOT NULL THEN '[' || {code} || '] ' || {message} END"


INVOKED_BY = rec("byt")
INVOCATION_STATUS: dict[str, str] = {
    "partition_key": "perdure_pk(i.id)",
    "id": "perdure_id(i.id)",
    "status": "i.status",
    "completion_result": f"CASE WHEN {rec('o.f')} IS NOT NULL THEN 'failure' "
    f"WHEN {rec('o.v')} IS NOT NULL THEN 'success' END",
    "completion_failure": _failure_text("o.f"),
    "target": f"i.service || COALESCE('/' || i.key, '') || '/' || {rec('h')}",
    "target_service_name": "i.service",
    "target_service_key": "i.key",
    "target_handler_name": rec("h"),
    "target_service_ty": rec("st"),
    "idempotency_key": rec("ik"),
    "invoked_by": rec("by"),
    "invoked_by_id": f"CASE WHEN {rec('by')} = 'subscription' THEN NULL ELSE {rec('byid')} END",
    "invoked_by_subscription_id": f"CASE WHEN {rec('by')} = 'subscription' THEN {rec('byid')} END",
    "invoked_by_service_name": f"CASE WHEN instr({INVOKED_BY}, '/') > 0 "
    f"THEN substr({INVOKED_BY}, 1, instr({INVOKED_BY}, '/') - 1) END",
    "invoked_by_target": INVOKED_BY,
    "restarted_from": rec("rf"),
    "pinned_deployment_id": rec("pd"),
    "trace_id": f"substr({rec('tp')}, 4, 32)",  # of the stored W3C traceparent (when tracing)
    "journal_size": rec("jl"),
    "journal_commands_size": "(SELECT count(*) FROM main.journal jc "
    "WHERE jc.inv = i.seq AND jc.type >= 1024 AND jc.type < 32768)",
    "created_at": "perdure_ts(i.created_at)",
    "modified_at": f"perdure_ts({rec('m')})",
    "inboxed_at": f"perdure_ts({rec('ia')})",
    "scheduled_at": f"CASE WHEN {rec('x')} IS NOT NULL THEN perdure_ts(i.created_at) END",
    "scheduled_start_at": f"perdure_ts({rec('x')})",
    "running_at": f"perdure_ts({rec('ra')})",
    "completed_at": f"perdure_ts({rec('ca')})",
    "completion_retention": f"perdure_dur({rec('cr')})",
    "journal_retention": f"perdure_dur({rec('jr')})",
    "suspended_waiting_for_completions": f"CASE WHEN i.status = 'suspended' THEN {rec('wc')} END",
    "suspended_waiting_for_signals": f"CASE WHEN i.status = 'suspended' THEN {rec('ws')} END",
}

INVOCATION_STATE: dict[str, str] = {
    "partition_key": "perdure_pk(i.id)",
    "id": "perdure_id(i.id)",
    "in_flight": "perdure_in_flight(i.id)",
    "retry_count": rec("rc"),
    "last_start_at": f"perdure_ts({rec('ls')})",
    "last_attempt_deployment_id": rec("lad"),
    "last_attempt_server": rec("las"),
    "next_retry_at": f"perdure_ts({rec('nr')})",
    "last_failure": f"perdure_failure({rec('lf')})",
    "last_failure_error_code": f"perdure_error_code({rec('lf')})",
    "last_failure_related_command_index": rec("lf.related_command_index"),
    "last_failure_related_command_name": rec("lf.related_command_name"),
    "last_failure_related_command_type": f"perdure_kind({rec('lf.related_command_type')})",
}

# Restate's derived status (its sys_invocation view): inboxed shows as pending;
# invoked splits into running (attempt in flight), backing-off (an attempt
# failed, a retry is due) and ready.
DERIVED_STATUS = (
    "CASE i.status WHEN 'inboxed' THEN 'pending' "
    "WHEN 'invoked' THEN CASE WHEN perdure_in_flight(i.id) THEN 'running' "
    f"WHEN {rec('rc')} > 0 THEN 'backing-off' ELSE 'ready' END "
    "ELSE i.status END"
)

INVOCATION: dict[str, str] = {
    **{k: v for k, v in INVOCATION_STATUS.items() if k not in ("partition_key", "status")},
    **{
        k: _when_attempts(v)
        for k, v in INVOCATION_STATE.items()
        if k not in ("partition_key", "id", "in_flight")
    },
    "status": DERIVED_STATUS,
}

# A command's completion id, and whether its notification has been journaled.
_CID = _entry("j", "completion_id")
JOURNAL: dict[str, str] = {
    "partition_key": "perdure_pk(ji.id)",
    "id": "perdure_id(ji.id)",
    "index": "j.idx",
    "entry_type": _entry("j", "entry_type"),
    "name": _entry("j", "name"),
    "completed": f"CASE WHEN {_CID} IS NOT NULL THEN EXISTS (SELECT 1 FROM main.journal n "
    f"WHERE n.inv = j.inv AND n.type >= 32768 AND {_entry('n', 'notification_id')} = {_CID}) END",
    "invoked_id": f"(SELECT {_entry('n', 'invocation_id_value')} FROM main.journal n "
    f"WHERE n.inv = j.inv AND n.type = 32782 "
    f"AND {_entry('n', 'notification_id')} = {_entry('j', 'invocation_id_notification')})",
    "invoked_target": _entry("j", "invoked_target"),
    "sleep_wakeup_at": f"perdure_ts({_entry('j', 'sleep_wakeup_at_ms')})",
    "promise_name": _entry("j", "promise_name"),
    "raw": "j.body",
    "raw_length": "length(j.body)",
    "version": "2",
    "entry_json": _entry("j", "entry_json"),
    "entry_lite_json": _entry("j", "entry_lite_json"),
    "appended_at": "perdure_ts(j.appended_at)",
}

JOURNAL_EVENTS: dict[str, str] = {
    "partition_key": "perdure_pk(i.id)",
    "id": "perdure_id(i.id)",
    "after_journal_entry_index": f"{rec('jl')} - 1",
    "appended_at": f"perdure_ts({rec('lf.at')})",
    "event_type": "'TransientError'",
    "event_json": f"perdure_transient_error({rec('lf')})",
}

STATE: dict[str, str] = {
    "partition_key": "perdure_key_pk(s.key)",
    "service_name": "s.service",
    "service_key": "s.key",
    "key": "perdure_utf8(s.skey)",
    "key_length": "length(s.skey)",
    "value_utf8": "perdure_utf8(s.value)",
    "value": "s.value",
    "value_length": "length(s.value)",
}

INBOX: dict[str, str] = {
    "partition_key": "perdure_pk(b.id)",
    "service_name": "b.service",
    "service_key": "b.key",
    "id": "perdure_id(b.id)",
    "sequence_number": "b.seq",
    "created_at": "(SELECT perdure_ts(i.created_at) FROM main.invocation i WHERE i.id = b.id)",
}

KEYED_SERVICE_STATUS: dict[str, str] = {
    "partition_key": "perdure_pk(l.id)",
    "service_name": "l.service",
    "service_key": "l.key",
    "invocation_id": "perdure_id(l.id)",
}

_P = "CAST(p.record AS TEXT)"
PROMISE: dict[str, str] = {
    "partition_key": "perdure_key_pk(p.key)",
    "service_name": "p.service",
    "service_key": "p.key",
    "key": "p.name",
    "completed": f"json_extract({_P}, '$.o') IS NOT NULL",
    "completion_success_value": f"perdure_unhex(json_extract({_P}, '$.o.v'))",
    "completion_success_value_utf8": f"perdure_utf8(perdure_unhex(json_extract({_P}, '$.o.v')))",
    "completion_failure": f"CASE WHEN json_extract({_P}, '$.o.f') IS NOT NULL THEN "
    f"'[' || json_extract({_P}, '$.o.f[0]') || '] ' || json_extract({_P}, '$.o.f[1]') END",
}


def _obj(field: str) -> str:
    return f"json_extract(c.value, '$.{field}')"


_LAG_COLUMNS = ("subscription_id", "topic", "partition", "position", "high_watermark", "lag")
SUBSCRIPTION_LAG: dict[str, str] = {name: _obj(name) for name in _LAG_COLUMNS}

SERVICE: dict[str, str] = {name: _obj(name) for name in ("name", "revision", "public", "ty", "deployment_id")}

DEPLOYMENT: dict[str, str] = {
    "id": _obj("id"),
    "ty": _obj("ty"),
    "endpoint": _obj("endpoint"),
    "created_at": f"perdure_ts({_obj('created_at_ms')})",
    "min_service_protocol_version": _obj("min_protocol_version"),
    "max_service_protocol_version": _obj("max_protocol_version"),
    "services": _obj("services"),
}

_RULE = "CAST(r.record AS TEXT)"


def _rule(field: str) -> str:
    return f"json_extract({_RULE}, '$.{field}')"


def _held(running: int) -> str:
    """How many invocations an enabled rule holds running (1) or queued (0)."""
    return (
        f"CASE WHEN {_rule('x')} OR ({_rule('c')} IS NULL AND {_rule('r')} IS NULL) THEN 0 "
        "ELSE (SELECT count(*) FROM main.limit_entry e "
        f"WHERE e.running = {running} AND perdure_rule_matches(r.pattern, e.service, e.handler, e.key)) END"
    )


RULES: dict[str, str] = {
    "pattern": "r.pattern",
    "concurrency": _rule("c"),
    "description": _rule("d"),
    "disabled": _rule("x"),
    "version": _rule("v"),
    "last_modified": f"perdure_ts({_rule('m')})",
}

USER_LIMITS: dict[str, str] = {
    "partition_key": "0",
    "rule_pattern": "r.pattern",
    "usage": _held(1),
    "concurrency_limit": _rule("c"),
    "available": f"max(0, {_rule('c')} - {_held(1)})",
    "num_waiters": _held(0),
}

LIMITS: dict[str, str] = {
    "pattern": "r.pattern",
    "disabled": _rule("x"),
    "concurrency": _rule("c"),
    "running": _held(1),
    "waiting": _held(0),
    "rate_per_s": _rule("r"),
    "burst": f"CASE WHEN {_rule('r')} IS NOT NULL THEN COALESCE({_rule('b')}, 1) END",
    "next_start_at": f"CASE WHEN {_rule('r')} IS NOT NULL THEN perdure_ts(max(r.tat - "
    f"(COALESCE({_rule('b')}, 1) - 1) * CAST(round(1000000.0 / {_rule('r')}) AS INTEGER), 0) / 1000) END",
}

_SCHED = "CAST(sc.record AS TEXT)"


def _sched(field: str) -> str:
    return f"json_extract({_SCHED}, '$.{field}')"


SCHEDULES: dict[str, str] = {
    "name": "sc.name",
    "target": f"{_sched('service')} || COALESCE('/' || {_sched('key')}, '') || '/' || {_sched('handler')}",
    "cron": _sched("cron"),
    "every": f"perdure_dur({_sched('every_ms')})",
    "timezone": _sched("timezone"),
    "overlap": _sched("overlap"),
    "catch_up_max": _sched("catch_up_max"),
    "paused": _sched("paused"),
    "next_run_at": f"perdure_ts({_sched('next_ms')})",
    "next_runs": "perdure_schedule_next_runs(sc.record)",
    "last_tick_at": f"perdure_ts({_sched('last_tick_ms')})",
    "last_invocation_id": _sched("last_invocation"),
    "fired": _sched("fired"),
    "skipped": _sched("skipped"),
    "declared_by": _sched("declared_by"),
}

# table -> (column expressions, FROM ... WHERE ...)
SOURCES: dict[str, tuple[Mapping[str, str], str]] = {
    "sys_invocation": (INVOCATION, "main.invocation i"),
    "sys_invocation_status": (INVOCATION_STATUS, "main.invocation i"),
    "sys_invocation_state": (INVOCATION_STATE, f"main.invocation i WHERE i.status IN {ATTEMPT_STATUSES}"),
    # journal rows are keyed by their invocation's `seq` (storage/schema.sql)
    "sys_journal": (JOURNAL, "main.journal j JOIN main.invocation ji ON ji.seq = j.inv"),
    "sys_journal_events": (JOURNAL_EVENTS, f"main.invocation i WHERE {rec('lf')} IS NOT NULL"),
    "state": (STATE, "main.state s"),
    "sys_inbox": (INBOX, "main.inbox b"),
    "sys_keyed_service_status": (KEYED_SERVICE_STATUS, "main.lock l"),
    "sys_promise": (PROMISE, "main.promise p"),
    "sys_service": (SERVICE, "json_each(perdure_services()) c"),
    "sys_deployment": (DEPLOYMENT, "json_each(perdure_deployments()) c"),
    "sys_rules": (RULES, "main.limit_rule r"),
    "sys_user_limits": (USER_LIMITS, f"main.limit_rule r WHERE {_rule('c')} IS NOT NULL"),
    "perdure_limits": (LIMITS, "main.limit_rule r"),
    "perdure_schedules": (SCHEDULES, "main.schedule sc"),
    "perdure_subscription_lag": (SUBSCRIPTION_LAG, "json_each(perdure_lag_rows()) c"),
}


def view_sql(table: str) -> str:
    """CREATE TEMP VIEW for one table: every catalogued column, NULL where
    Perdure has no such fact; tables Perdure does not have are empty."""
    exprs, source = SOURCES.get(table, ({}, ""))
    columns = [name for name, _ in TABLES[table]]
    unknown = set(exprs) - set(columns)
    assert not unknown, f"{table}: expressions for columns Restate does not have: {unknown}"
    select = ", ".join(f'{exprs.get(name, "NULL")} AS "{name}"' for name in columns)
    body = f"SELECT {select} FROM {source}" if source else f"SELECT {select} WHERE 0"
    return f'CREATE TEMP VIEW "{table}" AS {body}'


def all_views_sql() -> list[str]:
    return [view_sql(table) for table in TABLES]
