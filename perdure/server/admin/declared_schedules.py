"""Schedules declared next to their handlers (the SDK's `perdure.schedule` helper), applied when a
deployment registers.

A declaration is one entry of the handler's discovery metadata, `perdure.schedule.<name>` mapped
to a JSON object with the fields of `PUT /schedules/{name}` minus `target` (implied by the
handler) plus `key` for an object's or workflow's handler. Metadata is a map of strings in
Restate's manifest, so the official CLI and the Restate server read such a manifest unchanged.

When a deployment registers, every service it carries declares its complete set: the processor
puts new or changed schedules, leaves unchanged ones alone (a re-registration neither re-arms nor
doubles a tick, and an operator's pause stays) and deletes the ones the service stopped declaring
(only those it declared itself)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import replace

from perdure.protocol.discovery import ServiceManifest
from perdure.server.admin.schedules import NAME, ServiceShape, parse_schedule
from perdure.server.processor.commands import ChangeSchedule
from perdure.server.processor.schedules import Schedule, ScheduleError
from perdure.server.registry import Registry
from perdure.server.runtime import Runtime, Unavailable

log = logging.getLogger("perdure.schedules")

METADATA_PREFIX = "perdure.schedule."


class DeclarationError(ValueError):
    """A handler's schedule metadata is malformed (the registration is refused, 400)."""


def declared_schedules(services: Iterable[ServiceManifest]) -> dict[str, tuple[Schedule, ...]]:
    """Each service (of a manifest) -> the schedules its handlers declare (possibly none)."""
    out: dict[str, tuple[Schedule, ...]] = {}
    owners: dict[str, str] = {}
    for svc in services:
        shapes = {svc.name: ServiceShape(svc.name, svc.ty, [h.name for h in svc.handlers])}
        found: list[Schedule] = []
        for h in svc.handlers:
            for entry, value in sorted((h.options.metadata or {}).items()):
                if not entry.startswith(METADATA_PREFIX):
                    continue
                where = f"handler '{svc.name}/{h.name}', metadata '{entry}'"
                name = entry[len(METADATA_PREFIX) :]
                if not NAME.fullmatch(name):
                    raise DeclarationError(f"{where}: a schedule name is 1 to 200 of [a-zA-Z0-9_.-]")
                if name in owners:
                    raise DeclarationError(f"{where}: schedule '{name}' is also declared by {owners[name]}")
                owners[name] = f"'{svc.name}/{h.name}'"
                found.append(
                    replace(_parse(name, value, svc.name, h.name, shapes, where), declared_by=svc.name)
                )
        out[svc.name] = tuple(found)
    return out


def _parse(
    name: str, value: str, service: str, handler: str, shapes: dict[str, ServiceShape], where: str
) -> Schedule:
    try:
        spec = json.loads(value)
    except json.JSONDecodeError as exc:
        raise DeclarationError(f"{where}: not JSON ({exc})") from None
    if not isinstance(spec, dict):
        raise DeclarationError(f"{where}: must be a JSON object")
    key = spec.pop("key", None)
    if "target" in spec:
        raise DeclarationError(f"{where}: the handler is the target ('key' names an object's key)")
    if key is not None and not isinstance(key, str):
        raise DeclarationError(f"{where}: 'key' must be a string")
    target = f"{service}/{handler}" if key is None else f"{service}/{key}/{handler}"
    try:
        return parse_schedule(name, {**spec, "target": target}, shapes.get)
    except (ScheduleError, LookupError) as exc:
        raise DeclarationError(f"{where}: {exc.args[0]}") from None


def _declare(service: str, schedules: tuple[Schedule, ...], token: int) -> ChangeSchedule:
    return ChangeSchedule("declare", service, None, token, schedules)


class ScheduleDeclarations:
    """Applies what a registered manifest declares, through the processor (one command per service)."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def apply(self, declared: dict[str, tuple[Schedule, ...]]) -> None:
        for service, schedules in sorted(declared.items()):
            reply = await self._runtime.call(functools.partial(_declare, service, schedules))
            if reply.kind == "error":
                raise DeclarationError(f"schedules of '{service}': {reply.message}")

    def follow(self, registry: Registry, owned: Callable[[], set[int]]) -> Callable[[], Awaitable[bool]]:
        """A cluster node's registry refresh: each node applies the declarations of the schedules
        in the partitions it owns, so it applies them again when another node registered a
        deployment and when it owns partitions it did not own at the last refresh."""
        applied: set[int] = set()

        async def refresh() -> bool:
            changed = await registry.refresh()
            now = owned()
            if changed or now - applied:
                await self.apply_registered(registry)
            applied.clear()
            applied.update(now)
            return changed

        return refresh

    async def apply_registered(self, registry: Registry) -> None:
        """Apply what the latest revision of every registered service declares (at start)."""
        try:
            await self.apply(declared_schedules(s.manifest for s in registry.services() if s.manifest))
        except (DeclarationError, Unavailable) as exc:  # the server still starts
            log.warning("declared schedules not applied: %s", exc)
