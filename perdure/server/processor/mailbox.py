"""The receiving side of the partition mailbox (sans-IO): rows other partitions (or an ingress
that found no live owner) left for the partitions this processor owns are applied as commands,
and each is deleted in the same batch that applies it, so a crash between the two is not
possible: the row and its effects commit together or not at all.

Rows are read from committed data (`Reader.read_mailbox`): when a partition is adopted (in the
adoption's own batch, before anything newer of that partition is applied here, which keeps the
order of one sender's messages across the move), at recovery, and on `CheckMailbox` (the node's
mailbox task, woken by the database's NOTIFY or its poll). A row read twice before its delete
committed (two checks in one batch) is applied once: `_mail_taken` remembers the rows of the
batch being built."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from perdure.protocol import messages_pb2 as pb
from perdure.server.processor import mail
from perdure.server.processor.commands import CheckMailbox
from perdure.server.processor.core import ProcessorConfig
from perdure.server.processor.effects import Reply
from perdure.server.processor.journal import JournalCommands
from perdure.server.processor.locality import Locality
from perdure.server.processor.mail import Mail, MailAttach, MailInvoke, MailNotify, MailSignal
from perdure.server.processor.model import COMPLETED
from perdure.server.processor.portable import PortableError
from perdure.server.processor.requests import Requests
from perdure.server.processor.schema import Schema
from perdure.server.storage.interface import Reader, Recovery

log = logging.getLogger("perdure.processor.mailbox")

MAIL_READ_MAX = 1000  # rows per read; a full read is followed by another check at once
_RESULTS: dict[str, Callable[[bytes], Any]] = {
    "value": pb.Value.FromString,
    "failure": pb.Failure.FromString,
    "void": pb.Void.FromString,
}


class Mailbox(JournalCommands, Requests):
    def __init__(
        self,
        reader: Reader,
        schema: Schema,
        config: ProcessorConfig | None = None,
        locality: Locality | None = None,
    ) -> None:
        super().__init__(reader, schema, config, locality)
        self._mail_taken: set[tuple[int, int]] = set()  # applied in the batch being built

    def recover(self, recovery: Recovery, now_ms: int) -> None:
        super().recover(recovery, now_ms)
        self._take_mail(sorted(self._loc.owned))

    def adopt_partitions(self, parts: set[int], recovery: Recovery, now_ms: int) -> None:
        super().adopt_partitions(parts, recovery, now_ms)
        self._take_mail(sorted(parts))

    def committed(self) -> None:
        super().committed()
        self._mail_taken.clear()

    def _on_check_mailbox(self, cmd: CheckMailbox) -> None:
        read = self._take_mail(sorted(self._loc.owned))
        if cmd.token:
            self._effects.append(Reply(cmd.token, "ok", code=200, data=read))

    def _take_mail(self, parts: list[int]) -> int:
        """Apply the waiting rows of `parts` (owned); returns how many were read."""
        if not parts:
            return 0
        rows = self._reader.read_mailbox(parts, MAIL_READ_MAX)
        for partition, seq, body in rows:
            if (partition, seq) in self._mail_taken or partition not in self._loc.owned:
                continue
            self._mail_taken.add((partition, seq))
            self._batch.mail_done.append((partition, seq))
            try:
                m = mail.decode(body)
            except (PortableError, AssertionError):
                log.error("mailbox row %d of partition %d is not a message; dropped", seq, partition)
                continue
            self._apply_mail(m)
        return len(rows)

    def _apply_mail(self, m: Mail) -> None:
        if isinstance(m, MailInvoke):
            self._invoke_here(m)
        elif isinstance(m, MailSignal):
            self._signal(m.id, m.idx, {m.result: _RESULTS[m.result](m.body)})
        elif isinstance(m, MailNotify):
            target = self._get(m.id)
            if target is not None:
                self._notify(target, m.type, pb.NotificationMessage.FromString(m.body))
        elif isinstance(m, MailAttach):
            self._attach_answer(m.id, m.caller, m.wait)
        else:
            target = self._get(m.id)
            if target is not None and target.status != COMPLETED:
                self._kill_tree(target)
