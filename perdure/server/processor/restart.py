"""Restart as new (Restate's `PATCH /invocations/{id}/restart-as-new`): a completed invocation
runs again as a new invocation (a new id in the same partition) with the same input, optionally
keeping a prefix of its journal, so the steps recorded there are not run again."""

from __future__ import annotations

from perdure.protocol.codec import decode
from perdure.protocol.ids import InvocationId
from perdure.server.processor.commands import RestartAsNew
from perdure.server.processor.effects import Reply
from perdure.server.processor.model import (
    COMPLETED,
    INBOXED,
    READY,
    SCHEDULED,
    Entry,
    Invocation,
)
from perdure.server.processor.partitions import Partitions

# Command fields that name the notification completing the command.
_COMPLETION_FIELDS = ("result_completion_id", "invocation_id_notification_idx")
_COMMAND_TYPES = range(0x0400, 0x8000)
_NOTIFICATION_TYPE_MIN = 0x8000


def journal_prefix(journal: list[Entry], from_index: int | None) -> list[Entry] | None:
    """Entries 0..from_index (included) plus the notifications completing the commands among
    them; only the input when `from_index` is 0 or None. None when a command there has no
    completion yet (or the index is past the journal), as Restate refuses it."""
    if not from_index:
        return journal[:1]
    if from_index >= len(journal):
        return None
    head = journal[: from_index + 1]
    needed: set[int] = set()
    for e in head:
        if e.type in _COMMAND_TYPES:
            msg = decode(e.type, e.body)
            fields = msg.DESCRIPTOR.fields_by_name
            needed.update(getattr(msg, name) for name in _COMPLETION_FIELDS if name in fields)
    found: set[int] = set()
    later: list[Entry] = []
    for pos, e in enumerate(journal):
        if e.type < _NOTIFICATION_TYPE_MIN:
            continue
        n = decode(e.type, e.body)
        if n.WhichOneof("id") != "completion_id" or n.completion_id not in needed:
            continue
        found.add(n.completion_id)
        if pos > from_index:
            later.append(e)
    if found != needed:
        return None
    return head + later


class Restarts(Partitions):
    def _on_restart_as_new(self, cmd: RestartAsNew) -> None:
        if self._foreign(cmd.raw_id, cmd.token):
            return
        inv = self._get(cmd.raw_id)
        text = str(InvocationId.from_raw(cmd.raw_id))
        if inv is None or self._expired(inv):
            self._answer(cmd.token, 404, f"The requested invocation '{text}' does not exist")
            return
        if inv.target.handler_ty == "workflow":
            self._answer(
                cmd.token,
                422,
                f"Restarting the invocation '{text}' is not supported. Restarting workflows is not "
                "supported, and restarting invocations created using the old service protocol.",
            )
            return
        if inv.status in (SCHEDULED, INBOXED, READY):
            msg = f"The invocation '{text}' cannot be restarted because it's not running yet."
            self._answer(cmd.token, 425, msg)
            return
        if inv.status != COMPLETED:
            self._answer(cmd.token, 409, f"The invocation '{text}' is still running.")
            return
        journal = (
            inv.journal if len(inv.journal) == inv.journal_length else self._reader.get_journal(inv.id.raw)
        )
        if not journal:
            self._answer(
                cmd.token,
                410,
                f"The invocation '{text}' cannot be restarted because the input is not available. "
                "In order to restart an invocation, the journal must be available in order to read the "
                "input again. Journal can be retained after completion by enabling journal retention.",
            )
            return
        prefix = journal_prefix(journal, cmd.from_index)
        if prefix is None:
            self._answer(
                cmd.token,
                400,
                f"The prefix of the journal '{text}' up to 'from' (included) contains some Commands "
                "without respective Completions.",
            )
            return
        new = self._restarted(inv, prefix, cmd)
        self._admit(new)
        self._effects.append(Reply(cmd.token, "ok", invocation_id=new.id_str, code=200))

    def _restarted(self, old: Invocation, prefix: list[Entry], cmd: RestartAsNew) -> Invocation:
        iid = InvocationId.generate(old.id.partition_key)
        inv = Invocation(
            id=iid,
            target=old.target,
            status=SCHEDULED,
            created_at_ms=self._now,
            modified_at_ms=self._now,
            invoked_by="restart_as_new",
            completion_retention_ms=old.completion_retention_ms,
            journal_retention_ms=old.journal_retention_ms,
            last_stored_entry_at_ms=self._now,
            restarted_from=old.id_str,
        )
        if cmd.from_index:
            if cmd.deployment == "keep":
                inv.pinned_deployment_id = old.pinned_deployment_id
            elif cmd.deployment not in (None, "latest"):
                inv.pinned_deployment_id = cmd.deployment
        self._resident[iid.raw] = inv
        for e in prefix:
            self._append(inv, e.type, e.body)
        self._rehydrate(inv)
        return inv
