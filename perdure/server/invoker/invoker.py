"""The invoker: runs attempts as tasks of its own task group, one per live
invocation, and routes the processor's effects to them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from perdure.server.invoker.admission import Admission
from perdure.server.invoker.attempt import (
    PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN,
    Attempt,
    Endpoint,
    Opener,
)
from perdure.server.processor.commands import AttemptFailed, Command
from perdure.server.processor.effects import AbortAttempt, SendToAttempt, StartAttempt
from perdure.server.telemetry.hub import Telemetry

if TYPE_CHECKING:  # signing pulls in cryptography and PyJWT; imported only when configured
    from perdure.server.invoker.identity import RequestSigner

log = logging.getLogger("perdure.invoker")


class DeploymentView(Protocol):
    @property
    def uri(self) -> str: ...
    @property
    def protocol_mode(self) -> str: ...
    @property
    def max_protocol_version(self) -> int: ...
    @property
    def additional_headers(self) -> Mapping[str, str]: ...
    @property
    def http_version(self) -> str: ...  # "HTTP/2.0" | "HTTP/1.1"


class Deployments(Protocol):
    """What the invoker needs of the registry."""

    def deployment(self, deployment_id: str) -> DeploymentView | None: ...


class Invoker:
    def __init__(
        self,
        registry: Deployments,
        opener: Opener,
        submit: Callable[[Command], None],
        *,
        message_size_max: int,
        concurrency_max: int = 1_000,
        parked_max: int = 10_000,
        park_idle_s: float = 0.25,
        other_attempts_max: int | None = None,
        h1_opener: Opener | None = None,
        additional_headers: Mapping[str, str] | None = None,
        signer: RequestSigner | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._signer = signer
        self._registry = registry
        # Sent with every request; a deployment's own additional headers win over these.
        self._additional_headers = {k.lower(): v for k, v in (additional_headers or {}).items()}
        self._opener = opener
        self._h1_opener = h1_opener
        self._submit = submit
        self._message_size_max = message_size_max
        self._attempts: dict[bytes, Attempt] = {}
        self._tg: asyncio.TaskGroup | None = None
        self.admission: Admission[Attempt] = Admission(
            concurrency_max, parked_max=parked_max, park_idle_s=park_idle_s, others_max=other_attempts_max
        )
        self._room_wanted = asyncio.Event()
        self._telemetry = telemetry

    def bind(self, tg: asyncio.TaskGroup) -> None:
        """Attempts run as children of the server's task group."""
        self._tg = tg

    def start(self, eff: StartAttempt) -> None:
        old = self._attempts.pop(eff.invocation, None)
        if old is not None:
            self._drop(old)
        endpoint = self._endpoint(eff)
        if endpoint is None:
            self._submit(
                AttemptFailed(
                    eff.invocation, eff.attempt, 500, f"deployment {eff.deployment_id} is not registered"
                )
            )
            return
        opener = self._opener
        if endpoint.http1:
            if self._h1_opener is None:
                self._submit(
                    AttemptFailed(eff.invocation, eff.attempt, 500, "HTTP/1.1 deployments are disabled")
                )
                return
            opener = self._h1_opener
        attempt = Attempt(
            eff,
            endpoint,
            opener,
            self._submit,
            message_size_max=self._message_size_max,
            on_activity=self._activity,
        )
        self._attempts[eff.invocation] = attempt
        if self.admission.offer(attempt, fresh=attempt.fresh, now=self._now()):
            self._launch(attempt)
        else:
            self._room_wanted.set()

    async def run(self) -> None:
        """Make room for waiting attempts by parking idle ones (see `admission`)."""
        while True:
            await self._room_wanted.wait()
            self._room_wanted.clear()
            room = self.admission.make_room(self._now())
            for attempt in room.park:
                attempt.park()
            for attempt in room.admitted:
                self._launch(attempt)
            if room.next_check_s is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(room.next_check_s):
                        await self._room_wanted.wait()
                self._room_wanted.set()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _activity(self, attempt: Attempt, parkable: bool) -> None:
        if self.admission.activity(attempt, parkable=parkable, now=self._now()):
            self._room_wanted.set()  # a run opened: the others' share has room again

    def _launch(self, attempt: Attempt) -> None:
        assert self._tg is not None, "invoker not bound to a task group"
        attempt.task = self._tg.create_task(self._run(attempt))
        if self._telemetry is not None:
            self._telemetry.attempt_started(attempt)

    def _finished(self, attempt: Attempt) -> None:
        for admitted in self.admission.finish(attempt, self._now()):
            self._launch(admitted)
        if self.admission.waiting:
            self._room_wanted.set()

    async def _run(self, attempt: Attempt) -> None:
        try:
            await attempt.run()
        except Exception:
            log.exception("attempt of %s crashed", attempt.start.invocation_id)
            s = attempt.start
            self._submit(AttemptFailed(s.invocation, s.attempt, 500, "internal error in the invoker"))
        finally:
            if self._attempts.get(attempt.start.invocation) is attempt:
                del self._attempts[attempt.start.invocation]
            if self._telemetry is not None:
                self._telemetry.attempt_ended(attempt)
            self._finished(attempt)

    def send(self, eff: SendToAttempt) -> None:
        attempt = self._attempts.get(eff.invocation)
        if attempt is not None and attempt.start.attempt == eff.attempt:
            attempt.deliver(eff.type, eff.body)

    def abort(self, eff: AbortAttempt) -> None:
        attempt = self._attempts.get(eff.invocation)
        if attempt is not None and attempt.start.attempt == eff.attempt:
            del self._attempts[eff.invocation]
            self._drop(attempt)

    def abort_all(self) -> None:
        for attempt in list(self._attempts.values()):
            self._drop(attempt)
        self._attempts.clear()

    def _drop(self, attempt: Attempt) -> None:
        """Abort a running attempt (its task's end frees the slot), or forget a queued one."""
        if attempt.task is None:
            self.admission.finish(attempt, self._now())
        else:
            attempt.abort()

    def _endpoint(self, eff: StartAttempt) -> Endpoint | None:
        dep = self._registry.deployment(eff.deployment_id)
        if dep is None:
            return None
        version = min(dep.max_protocol_version, PROTOCOL_VERSION_MAX)
        if version < PROTOCOL_VERSION_MIN:
            return None
        uri = dep.uri if dep.uri.endswith("/") else dep.uri + "/"
        return Endpoint(
            uri=uri,
            # HTTP/1.1 cannot stream both ways: such endpoints run request-response.
            request_response=dep.protocol_mode == "REQUEST_RESPONSE" or dep.http_version == "HTTP/1.1",
            http1=dep.http_version == "HTTP/1.1",
            protocol_version=version,
            additional_headers=tuple(
                {
                    **self._additional_headers,
                    **{k.lower(): v for k, v in dep.additional_headers.items()},
                }.items()
            ),
            signer=self._signer,
        )
