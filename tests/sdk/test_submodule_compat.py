"""Services that import from `restate`'s submodules (`restate.serde`, `restate.exceptions`,
`restate.context`, ...) run with the same import paths under `perdure`: every name the official
submodule defines that users write is importable from the Perdure submodule of the same name."""

from __future__ import annotations

import importlib

import pytest

NAMES = {
    "serde": ["Serde", "BytesSerde", "JsonSerde", "DefaultSerde", "PydanticJsonSerde", "is_pydantic"],
    "exceptions": [
        "TerminalError",
        "RetryableError",
        "SdkInternalBaseException",
        "SuspendedException",
        "is_internal_exception",
    ],
    "context": [
        "Context",
        "ObjectContext",
        "ObjectSharedContext",
        "WorkflowContext",
        "WorkflowSharedContext",
        "Request",
        "RunOptions",
        "DurablePromise",
        "SendHandle",
        "RestateDurableFuture",
        "RestateDurableCallFuture",
        "RestateDurableSleepFuture",
        "AttemptFinishedEvent",
    ],
    "retry_policy": ["InvocationRetryPolicy"],
    "service": ["Service"],
    "object": ["VirtualObject"],
    "workflow": ["Workflow"],
}


@pytest.mark.parametrize("module", sorted(NAMES))
def test_submodule_names_match_the_official_sdk(module: str) -> None:
    official = importlib.import_module(f"restate.{module}")
    ours = importlib.import_module(f"perdure.{module}")
    for name in NAMES[module]:
        assert hasattr(official, name), f"restate.{module}.{name} (the list is out of date)"
        assert hasattr(ours, name), f"perdure.{module}.{name} is missing"


def test_submodule_names_are_the_top_level_objects() -> None:
    import perdure
    import perdure.exceptions
    import perdure.serde

    assert perdure.exceptions.TerminalError is perdure.TerminalError
    assert perdure.serde.JsonSerde is perdure.JsonSerde
