"""A handler: the user's function plus what the SDK derives from its signature
(arity, input/output serdes from type hints, JSON schemas for discovery)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from perdure.sdk.options import InvocationRetryPolicy
from perdure.sdk.serde import Serde, is_pydantic, optional_core, serde_for

ServiceKind = Literal["service", "object", "workflow"]
HandlerKind = Literal["exclusive", "shared", "workflow"]
_HANDLER_ATTR = "__perdure_handler__"


@dataclass
class ServiceTag:
    kind: ServiceKind
    name: str
    description: str | None = None
    metadata: dict[str, str] | None = None


@dataclass
class HandlerIO:
    accept: str
    content_type: str
    input_serde: Serde[Any]
    output_serde: Serde[Any]
    takes_input: bool = True
    returns_output: bool = True
    input_hint: Any = None
    output_hint: Any = None


@dataclass
class HandlerOptions:
    """Per-handler settings published in the discovery manifest."""

    metadata: dict[str, str] | None = None
    inactivity_timeout: timedelta | None = None
    abort_timeout: timedelta | None = None
    journal_retention: timedelta | None = None
    idempotency_retention: timedelta | None = None
    workflow_retention: timedelta | None = None
    enable_lazy_state: bool | None = None
    ingress_private: bool | None = None
    invocation_retry_policy: InvocationRetryPolicy | None = None
    context_managers: list[Callable[[], typing.AsyncContextManager[None]]] | None = None


@dataclass
class Handler:
    service_tag: ServiceTag
    handler_io: HandlerIO
    kind: HandlerKind | None
    name: str
    fn: Callable[..., Any]
    arity: int
    description: str | None = None
    options: HandlerOptions = field(default_factory=HandlerOptions)


def make_handler(
    tag: ServiceTag,
    io: HandlerIO,
    name: str | None,
    kind: HandlerKind | None,
    fn: Callable[..., Any],
    options: HandlerOptions,
) -> Handler:
    """Inspect `fn` and build its Handler; the handler is also attached to `fn`
    so that `ctx.service_call(fn, ...)` can find service and handler names."""
    handler_name = name or fn.__name__
    signature = inspect.signature(fn, eval_str=True)
    params = list(signature.parameters.values())
    if not params:
        raise ValueError(f"handler {handler_name} must take the context as its first parameter")
    if len(params) > 2:
        raise ValueError(f"handler {handler_name} takes at most (ctx, input)")
    if len(params) == 1:
        io.takes_input = False
    else:
        hint = params[1].annotation
        if hint is not inspect.Parameter.empty:
            io.input_hint = hint
            io.input_serde = serde_for(hint, io.input_serde)
    ret = signature.return_annotation
    if ret is None or ret is inspect.Signature.empty or ret is type(None):
        io.returns_output = False
    else:
        io.output_hint = ret
        io.output_serde = serde_for(ret, io.output_serde)
    handler = Handler(tag, io, kind, handler_name, fn, len(params), inspect.getdoc(fn), options)
    setattr(fn, _HANDLER_ATTR, handler)
    return handler


def handler_of(fn: Any) -> Handler:
    """The Handler a decorated function stands for."""
    handler = getattr(fn, _HANDLER_ATTR, None)
    if not isinstance(handler, Handler):
        raise ValueError(f"{fn!r} is not a handler of a Service, VirtualObject or Workflow")
    return handler


def json_schema(hint: Any) -> Any:
    """A JSON schema for discovery; `True` (anything) when the hint says nothing more."""
    core = optional_core(hint)
    if is_pydantic(core):
        return core.model_json_schema(mode="serialization")
    simple = {str: "string", int: "integer", float: "number", bool: "boolean", dict: "object"}
    if core in simple:
        return {"type": simple[core]}
    if core is None or core is type(None):
        return {"type": "null"}
    origin = typing.get_origin(core)
    if origin is list:
        args = typing.get_args(core)
        return {"type": "array", "items": json_schema(args[0]) if args else True}
    if origin is dict:
        return {"type": "object"}
    return True
