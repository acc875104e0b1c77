"""A cluster node's mailbox task: it makes the processor apply the rows other partitions (or an
ingress that found no live owner) left for the partitions this node owns.

Delivery is prompt through PostgreSQL's LISTEN/NOTIFY: every transaction that posts rows
notifies `perdure_mailbox` with their partitions when it commits; this node listens on a
connection of its own and, when a notified partition is one of its own, submits `CheckMailbox`
(the processor reads the rows from committed data, applies them and deletes them in the same
batch). A poll every `poll_s` catches what a lost listening connection missed; an empty poll is
one indexed read. A takeover picks up the adopted partitions' rows in the adoption's batch
(`processor/mailbox.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from perdure.server.processor.commands import CheckMailbox
from perdure.server.processor.mailbox import MAIL_READ_MAX
from perdure.server.runtime import Runtime, Unavailable
from perdure.server.storage.interface import StorageError
from perdure.server.storage.postgres import PostgresStorage

log = logging.getLogger("perdure.cluster.mailbox")

MAIL_POLL_S = 1.0
RELISTEN_S = 1.0


class MailboxTask:
    def __init__(self, storage: PostgresStorage, runtime: Runtime, *, poll_s: float = MAIL_POLL_S) -> None:
        self._storage = storage
        self._runtime = runtime
        self._poll_s = poll_s
        self._wake = asyncio.Event()
        self.checks = 0

    def wake(self, partitions: set[int] | None = None) -> None:
        """Rows may wait for `partitions` (None: for any of this node's)."""
        if partitions is None or not partitions.isdisjoint(self._storage.owned_partitions()):
            self._wake.set()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._listen())
            tg.create_task(self._consume())

    async def _listen(self) -> None:
        while True:
            try:
                await self._storage.watch_mail(self.wake)
                log.warning("the mailbox's listening connection closed; listening again")
            except StorageError as exc:
                log.warning("cannot listen for mailbox rows (%s); polling meanwhile", exc)
            self._wake.set()  # catch up with what was notified meanwhile
            await asyncio.sleep(RELISTEN_S)

    async def _consume(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_s)
            self._wake.clear()
            if not self._storage.owned_partitions():
                continue
            try:
                reply = await self._runtime.call_here(CheckMailbox)
            except Unavailable:
                continue  # the processor is being rebuilt; its recovery reads the mailbox too
            self.checks += 1
            if isinstance(reply.data, int) and reply.data >= MAIL_READ_MAX:
                self._wake.set()  # a full read: more may wait
