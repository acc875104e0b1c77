"""The introspection views on PostgreSQL: Restate's tables as TEMP VIEWs over
Perdure's tables (in `public`; a temp view named `state` shadows the table for
the query's session only), with the same columns and column types as on SQLite
(`tables.TABLES`). Journal entries are decoded in SQL by the functions of
migration 3, walking a message catalogue (`pb_field`, `pb_kind`) that each
connection fills from the server's own protobuf descriptors; the live facts
(attempts in flight, the registry) are a temp table and two settings that each
query's transaction sets."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from http import HTTPStatus
from typing import Any

from google.protobuf.descriptor import FieldDescriptor

from perdure.protocol.codec import MESSAGE_CLASSES, MessageType, is_command, is_notification
from perdure.server.query.entries import entry_type, kind_name
from perdure.server.query.functions import PROTOCOL_CODE_NAMES, RESTATE_ERROR_CODES, RETRYABLE_ERROR_CODE
from perdure.server.query.tables import BIN, BOOL, TABLES, U32, U64, information_schema_rows

_T = MessageType
ATTEMPT_STATUSES = "('invoked', 'paused')"
LIVE_TABLE = "pg_temp.live_attempt"
SERVICES_SETTING = "perdure.services"
DEPLOYMENTS_SETTING = "perdure.deployments"


def _path(path: str) -> str:
    return "{" + ",".join(path.replace("[", ".").replace("]", "").split(".")) + "}"


def rec(path: str, alias: str = "x.r") -> str:
    """A field of a JSON document as text (NULL when absent or JSON null)."""
    return f"({alias} #>> '{_path(path)}')"


def rec_i(path: str, alias: str = "x.r") -> str:
    return f"{rec(path, alias)}::bigint"


def _when_attempts(expr: str) -> str:
    return f"CASE WHEN i.status IN {ATTEMPT_STATUSES} THEN {expr} END"


def _failure_pair(path: str, alias: str = "x.r") -> str:
    code, message = rec(path + "[0]", alias), rec(path + "[1]", alias)
    return f"CASE WHEN {rec(path, alias)} IS NOT NULL THEN '[' || {code} || '] ' || {message} END"


def _kind_of(type_expr: str) -> str:
    return (
        f"COALESCE((SELECT k.kind FROM pg_temp.pb_kind k WHERE k.type = {type_expr}), "
        f"'0x' || lpad(to_hex({type_expr}), 4, '0'))"
    )


IN_FLIGHT = f"EXISTS (SELECT 1 FROM {LIVE_TABLE} la WHERE la.id = i.id)"
INVOKED_BY = rec("byt")
_LF_CODE = rec_i("lf.code")
_CODE_NAME = f"COALESCE((SELECT h.name FROM pg_temp.http_code h WHERE h.code = {_LF_CODE}), 'Unknown')"
_STACK = f"COALESCE({rec('lf.stacktrace')}, '')"
LAST_FAILURE = (
    f"CASE WHEN {rec('lf')} IS NOT NULL THEN '[' || {_LF_CODE} || ' ' || {_CODE_NAME} || '] ' || "
    f"{rec('lf.message')} || CASE WHEN {_STACK} <> '' THEN E'\\n' || {_STACK} ELSE '' END END"
)
_ERROR_CODES = " ".join(f"WHEN {code} THEN '{name}'" for code, name in RESTATE_ERROR_CODES.items())
ERROR_CODE = (
    f"CASE WHEN {rec('lf')} IS NOT NULL THEN "
    f"CASE {_LF_CODE} {_ERROR_CODES} ELSE '{RETRYABLE_ERROR_CODE}' END END"
)
_RCT = rec_i("lf.related_command_type")
TRANSIENT_ERROR = (
    f"CASE WHEN {rec('lf')} IS NOT NULL THEN "
    f"""'{{"ty":"TransientError","error_code":' || {_LF_CODE} || ',"error_message":' || """
    f"to_json({rec('lf.message')})::text || ',\"error_stacktrace\":' || to_json({_STACK})::text || "
    f"COALESCE(',\"related_command_index\":' || {rec('lf.related_command_index')}, '') || "
    f"COALESCE(',\"related_command_name\":' || to_json({rec('lf.related_command_name')})::text, '') || "
    f"COALESCE(',\"related_command_type\":' || to_json({_kind_of(_RCT)})::text, '') || '}}' END"
)

INVOCATION_STATUS: dict[str, str] = {
    "partition_key": "perdure_pk(i.id)",
    "id": "perdure_id(i.id)",
    "status": "i.status",
    "completion_result": f"CASE WHEN {rec('o.f')} IS NOT NULL THEN 'failure' "
    f"WHEN {rec('o.v')} IS NOT NULL THEN 'success' END",
    "completion_failure": _failure_pair("o.f"),
    "target": f"i.service || COALESCE('/' || i.key, '') || '/' || {rec('h')}",
    "target_service_name": "i.service",
    "target_service_key": "i.key",
    "target_handler_name": rec("h"),
    "target_service_ty": rec("st"),
    "idempotency_key": rec("ik"),
    "invoked_by": rec("by"),
    "invoked_by_id": f"CASE WHEN {rec('by')} = 'subscription' THEN NULL ELSE {rec('byid')} END",
    "invoked_by_subscription_id": f"CASE WHEN {rec('by')} = 'subscription' THEN {rec('byid')} END",
    "invoked_by_service_name": f"CASE WHEN strpos({INVOKED_BY}, '/') > 0 "
    f"THEN substr({INVOKED_BY}, 1, strpos({INVOKED_BY}, '/') - 1) END",
    "invoked_by_target": INVOKED_BY,
    "restarted_from": rec("rf"),
    "pinned_deployment_id": rec("pd"),
    "trace_id": f"substr({rec('tp')}, 4, 32)",  # of the stored W3C traceparent (when tracing)
    "journal_size": rec("jl"),
    "journal_commands_size": "(SELECT count(*) FROM public.journal jc WHERE jc.partition = i.partition "
    "AND jc.id = i.id AND jc.type >= 1024 AND jc.type < 32768)",
    "created_at": "perdure_ts(i.created_at)",
    "modified_at": f"perdure_ts({rec_i('m')})",
    "inboxed_at": f"perdure_ts({rec_i('ia')})",
    "scheduled_at": f"CASE WHEN {rec('x')} IS NOT NULL THEN perdure_ts(i.created_at) END",
    "scheduled_start_at": f"perdure_ts({rec_i('x')})",
    "running_at": f"perdure_ts({rec_i('ra')})",
    "completed_at": f"perdure_ts({rec_i('ca')})",
    "completion_retention": f"perdure_dur({rec_i('cr')})",
    "journal_retention": f"perdure_dur({rec_i('jr')})",
    "suspended_waiting_for_completions": f"CASE WHEN i.status = 'suspended' THEN {rec('wc')} END",
    "suspended_waiting_for_signals": f"CASE WHEN i.status = 'suspended' THEN {rec('ws')} END",
}

INVOCATION_STATE: dict[str, str] = {
    "partition_key": "perdure_pk(i.id)",
    "id": "perdure_id(i.id)",
    "in_flight": IN_FLIGHT,
    "retry_count": rec("rc"),
    "last_start_at": f"perdure_ts({rec_i('ls')})",
    "last_attempt_deployment_id": rec("lad"),
    "last_attempt_server": rec("las"),
    "next_retry_at": f"perdure_ts({rec_i('nr')})",
    "last_failure": LAST_FAILURE,
    "last_failure_error_code": ERROR_CODE,
    "last_failure_related_command_index": rec("lf.related_command_index"),
    "last_failure_related_command_name": rec("lf.related_command_name"),
    "last_failure_related_command_type": f"CASE WHEN {_RCT} IS NOT NULL THEN {_kind_of(_RCT)} END",
}

DERIVED_STATUS = (
    "CASE i.status WHEN 'inboxed' THEN 'pending' "
    f"WHEN 'invoked' THEN CASE WHEN {IN_FLIGHT} THEN 'running' "
    f"WHEN {rec_i('rc')} > 0 THEN 'backing-off' ELSE 'ready' END "
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

# ---------------------------------------------------------------- journal entries


def _fields(cls_type: int) -> Mapping[str, Any]:
    cls = MESSAGE_CLASSES.get(cls_type)
    return {} if cls is None else cls.DESCRIPTOR.fields_by_name


def _by_type(alias: str, pick: dict[int, str]) -> str:
    """CASE over the entry's message type: each type's own SQL, NULL for the others."""
    whens = " ".join(f"WHEN {t} THEN {sql}" for t, sql in sorted(pick.items()))
    return f"CASE {alias}.type {whens} END" if whens else "NULL"


def _command_types() -> list[int]:
    return [int(t) for t in MessageType if is_command(int(t)) and int(t) in MESSAGE_CLASSES]


def _field_sql(alias: str, name: str, text: bool, types: list[int] | None = None) -> str:
    """Each command type's field `name` (its default when unset), by field number."""
    pick = {}
    for t in types if types is not None else _command_types():
        f = _fields(t).get(name)
        if f is not None:
            fn = "perdure_pb_text" if text else "perdure_pb_int"
            default = "''" if text else "0"
            pick[t] = f"COALESCE({fn}({alias}.body, {f.number}), {default})"
    return _by_type(alias, pick)


def _entry_name(alias: str) -> str:
    pick = {}
    for t in _command_types():
        fields = _fields(t)
        f = fields.get("entry_name") if t == _T.SEND_SIGNAL else fields.get("name")
        if f is not None:
            pick[t] = f"COALESCE(perdure_pb_text({alias}.body, {f.number}), '')"
    return _by_type(alias, pick)


_CALLS = [int(_T.CALL), int(_T.ONE_WAY_CALL)]
_PROMISES = [int(_T.GET_PROMISE), int(_T.PEEK_PROMISE), int(_T.COMPLETE_PROMISE)]


def _notification_id(alias: str) -> str:
    return (
        f"CASE WHEN {alias}.type >= 32768 AND {alias}.type < 64512 THEN perdure_pb_int({alias}.body, 1) END"
    )


def _invoked_target(alias: str) -> str:
    pick = {}
    for t in _CALLS:
        f = _fields(t)
        svc, key, handler = (
            f"COALESCE(perdure_pb_text({alias}.body, {f[n].number}), '')"
            for n in ("service_name", "key", "handler_name")
        )
        pick[t] = f"{svc} || CASE WHEN {key} <> '' THEN '/' || {key} ELSE '' END || '/' || {handler}"
    return _by_type(alias, pick)


def _entry_json(alias: str, lite: bool) -> str:
    flag = "true" if lite else "false"
    return (
        f"CASE WHEN k.category = 'command' THEN '{{\"Command\":{{' || to_json(k.kind)::text || ':' || "
        f"perdure_pb_json({alias}.body, k.msg, {flag}) || '}}}}' "
        f"WHEN k.category = 'notification' THEN perdure_notification_json({alias}.body, k.kind, "
        f"{alias}.type = {int(_T.SIGNAL)}, {flag}) "
        f"""ELSE '{{"Undecodable":"unknown message type 0x' || """
        f"""lpad(to_hex({alias}.type), 4, '0') || '"}}' END"""
    )


_CID = _field_sql("j", "result_completion_id", text=False)
_CALL_NOTIFICATION = _field_sql("j", "invocation_id_notification_idx", text=False, types=_CALLS)
_ENTRY_TYPE_FALLBACK = (
    "CASE WHEN j.type >= 1024 AND j.type < 32768 THEN 'Command: 0x' "
    "WHEN j.type >= 32768 AND j.type < 64512 THEN 'Notification: 0x' ELSE 'Custom: 0x' END "
    "|| lpad(to_hex(j.type), 4, '0')"
)
JOURNAL: dict[str, str] = {
    "partition_key": "perdure_pk(j.id)",
    "id": "perdure_id(j.id)",
    "index": "j.idx",
    "entry_type": f"COALESCE(k.entry_type, {_ENTRY_TYPE_FALLBACK})",
    "name": _entry_name("j"),
    "completed": f"CASE WHEN {_CID} IS NOT NULL THEN EXISTS (SELECT 1 FROM public.journal n "
    "WHERE n.partition = j.partition AND n.id = j.id AND n.type >= 32768 "
    f"AND {_notification_id('n')} = {_CID}) END",
    "invoked_id": "(SELECT perdure_pb_text(n.body, 16) FROM public.journal n WHERE n.partition = j.partition "
    f"AND n.id = j.id AND n.type = {int(_T.CALL_INVOCATION_ID_COMPLETION)} "
    f"AND {_notification_id('n')} = {_CALL_NOTIFICATION} LIMIT 1)",
    "invoked_target": _invoked_target("j"),
    "sleep_wakeup_at": f"perdure_ts({_field_sql('j', 'wake_up_time', text=False, types=[int(_T.SLEEP)])})",
    "promise_name": _field_sql("j", "key", text=True, types=_PROMISES),
    "raw": "j.body",
    "raw_length": "length(j.body)",
    "version": "2",
    "entry_json": _entry_json("j", lite=False),
    "entry_lite_json": _entry_json("j", lite=True),
    "appended_at": "perdure_ts(j.appended_at)",
}

JOURNAL_EVENTS: dict[str, str] = {
    "partition_key": "perdure_pk(i.id)",
    "id": "perdure_id(i.id)",
    "after_journal_entry_index": f"{rec_i('jl')} - 1",
    "appended_at": f"perdure_ts({rec_i('lf.at')})",
    "event_type": "'TransientError'",
    "event_json": TRANSIENT_ERROR,
}

STATE: dict[str, str] = {
    "partition_key": "s.pk",
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
    "created_at": "(SELECT perdure_ts(i.created_at) FROM public.invocation i "
    "WHERE i.partition = b.partition AND i.id = b.id)",
}

KEYED_SERVICE_STATUS: dict[str, str] = {
    "partition_key": "perdure_pk(l.id)",
    "service_name": "l.service",
    "service_key": "l.key",
    "invocation_id": "perdure_id(l.id)",
}

_PV = f"decode({rec('o.v', 'y.r')}, 'hex')"
PROMISE: dict[str, str] = {
    "partition_key": "p.pk",
    "service_name": "p.service",
    "service_key": "p.key",
    "key": "p.name",
    "completed": f"{rec('o', 'y.r')} IS NOT NULL",
    "completion_success_value": _PV,
    "completion_success_value_utf8": f"perdure_utf8({_PV})",
    "completion_failure": _failure_pair("o.f", "y.r"),
}


def _obj(field: str) -> str:
    return f"(c.value ->> '{field}')"


SERVICE: dict[str, str] = {name: _obj(name) for name in ("name", "revision", "public", "ty", "deployment_id")}

DEPLOYMENT: dict[str, str] = {
    "id": _obj("id"),
    "ty": _obj("ty"),
    "endpoint": _obj("endpoint"),
    "created_at": f"perdure_ts({_obj('created_at_ms')}::bigint)",
    "min_service_protocol_version": _obj("min_protocol_version"),
    "max_service_protocol_version": _obj("max_protocol_version"),
    "services": _obj("services"),
}

_INV = "public.invocation i, LATERAL (SELECT convert_from(i.record, 'UTF8')::jsonb AS r OFFSET 0) x"


def _setting(name: str) -> str:
    return (
        f"jsonb_array_elements(COALESCE(NULLIF(current_setting('{name}', true), ''), '[]')::jsonb) c(value)"
    )


_RULE = "public.limit_rule r, LATERAL (SELECT convert_from(r.record, 'UTF8')::jsonb AS r OFFSET 0) z"

RULES: dict[str, str] = {
    "pattern": "r.pattern",
    "concurrency": rec("c", "z.r"),
    "description": rec("d", "z.r"),
    "disabled": rec("x", "z.r"),
    "version": rec("v", "z.r"),
    "last_modified": f"perdure_ts({rec_i('m', 'z.r')})",
}

SOURCES: dict[str, tuple[Mapping[str, str], str]] = {
    "sys_invocation": (INVOCATION, _INV),
    "sys_invocation_status": (INVOCATION_STATUS, _INV),
    "sys_invocation_state": (INVOCATION_STATE, f"{_INV} WHERE i.status IN {ATTEMPT_STATUSES}"),
    "sys_journal": (JOURNAL, "public.journal j LEFT JOIN pg_temp.pb_kind k ON k.type = j.type"),
    "sys_journal_events": (JOURNAL_EVENTS, f"{_INV} WHERE {rec('lf')} IS NOT NULL"),
    "state": (STATE, "public.state s"),
    "sys_inbox": (INBOX, "public.inbox b"),
    "sys_keyed_service_status": (KEYED_SERVICE_STATUS, "public.lock l"),
    "sys_promise": (
        PROMISE,
        "public.promise p, LATERAL (SELECT convert_from(p.record, 'UTF8')::jsonb AS r OFFSET 0) y",
    ),
    "sys_service": (SERVICE, _setting(SERVICES_SETTING)),
    "sys_deployment": (DEPLOYMENT, _setting(DEPLOYMENTS_SETTING)),
    "sys_rules": (RULES, _RULE),
}


def _pg_type(arrow_type: str) -> str:
    if arrow_type in (U32, U64):
        return "bigint"
    if arrow_type == BOOL:
        return "boolean"
    if arrow_type == BIN:
        return "bytea"
    return "text"


def view_sql(table: str) -> str:
    exprs, source = SOURCES.get(table, ({}, ""))
    columns = TABLES[table]
    unknown = set(exprs) - {name for name, _ in columns}
    assert not unknown, f"{table}: expressions for columns Restate does not have: {unknown}"
    select = ", ".join(f'({exprs.get(name, "NULL")})::{_pg_type(ty)} AS "{name}"' for name, ty in columns)
    body = f"SELECT {select} FROM {source}" if source else f"SELECT {select} WHERE false"
    return f'CREATE TEMP VIEW "{table}" AS {body}'


# ---------------------------------------------------------------- per-connection catalogue


def _kind(f: FieldDescriptor) -> str:
    if f.type == FieldDescriptor.TYPE_MESSAGE:
        return "message"
    if f.type == FieldDescriptor.TYPE_STRING:
        return "string"
    if f.type == FieldDescriptor.TYPE_BYTES:
        return "bytes"
    if f.type == FieldDescriptor.TYPE_BOOL:
        return "bool"
    return "int"


def _descriptors() -> Iterator[Any]:
    seen: set[str] = set()
    todo = [cls.DESCRIPTOR for cls in MESSAGE_CLASSES.values()]
    while todo:
        d = todo.pop()
        if d.full_name in seen:
            continue
        seen.add(d.full_name)
        yield d
        todo.extend(f.message_type for f in d.fields if f.message_type is not None)


def pb_field_rows() -> list[tuple[Any, ...]]:
    """(msg, num, name, kind, repeated, presence, nested) of every message the journal can hold."""
    rows = []
    for d in _descriptors():
        for f in d.fields:
            repeated = bool(f.is_repeated)
            presence = not repeated and f.has_presence
            nested = f.message_type.name if f.message_type is not None else None
            rows.append((d.name, f.number, f.name, _kind(f), repeated, presence, nested))
    return rows


def pb_kind_rows() -> list[tuple[int, str, str, str, str]]:
    """(type, entry_type, kind, message, category) of every known message type."""
    rows = []
    for t, cls in MESSAGE_CLASSES.items():
        category = "command" if is_command(t) else "notification" if is_notification(t) else "other"
        rows.append((int(t), entry_type(int(t)), kind_name(int(t)), cls.DESCRIPTOR.name, category))
    return rows


def http_code_rows() -> list[tuple[int, str]]:
    names = {int(s): s.phrase.replace(" ", "") for s in HTTPStatus}
    names.update(PROTOCOL_CODE_NAMES)
    return sorted(names.items())


def setup_statements() -> list[tuple[str, list[tuple[Any, ...]]]]:
    """What a query connection runs once: (SQL, rows for executemany, or [] to run once)."""
    out: list[tuple[str, list[tuple[Any, ...]]]] = [
        (
            "CREATE TEMP TABLE pb_field (msg text, num integer, name text, kind text, repeated boolean, "
            "presence boolean, nested text, PRIMARY KEY (msg, num))",
            [],
        ),
        ("INSERT INTO pg_temp.pb_field VALUES ($1, $2, $3, $4, $5, $6, $7)", pb_field_rows()),
        (
            "CREATE TEMP TABLE pb_kind (type integer PRIMARY KEY, entry_type text, kind text, msg text, "
            "category text)",
            [],
        ),
        ("INSERT INTO pg_temp.pb_kind VALUES ($1, $2, $3, $4, $5)", pb_kind_rows()),
        ("CREATE TEMP TABLE http_code (code integer PRIMARY KEY, name text)", []),
        ("INSERT INTO pg_temp.http_code VALUES ($1, $2)", http_code_rows()),
        ("CREATE TEMP TABLE live_attempt (id bytea PRIMARY KEY)", []),
        (
            "CREATE TEMP TABLE columns (table_catalog text, table_schema text, table_name text, "
            "column_name text, ordinal_position bigint, is_nullable text, data_type text, "
            "character_octet_length bigint)",
            [],
        ),
        ("INSERT INTO pg_temp.columns VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", information_schema_rows()),
        (
            "CREATE TEMP TABLE tables "
            "(table_catalog text, table_schema text, table_name text, table_type text)",
            [],
        ),
        (
            "INSERT INTO pg_temp.tables VALUES ('restate', 'public', $1, 'VIEW')",
            [(t,) for t in TABLES],
        ),
    ]
    out.extend((view_sql(t), []) for t in TABLES)
    return out
