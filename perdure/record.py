"""`@record`: an immutable value class for the type checker, a plain slotted dataclass at run time.

The processor's commands and effects, the journal's frames and the invocation model's values are
made tens of times per invocation. A frozen dataclass's `__init__` sets every field through
`object.__setattr__` (its own `__setattr__` refuses): 0.62 us for five fields against 0.16 us for
plain slots, and these constructors were 4% of the server's CPU under load (docs/performance.md,
session 10). A `record` is `dataclass(slots=True, unsafe_hash=True)` at run time (equality and
hashing as a frozen dataclass has them) and frozen for mypy (PEP 681 `frozen_default`), which
rejects any assignment to a field in this code base (`mypy --strict` gates every change)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

T = TypeVar("T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[T]) -> type[T]:
    return dataclass(slots=True, unsafe_hash=True)(cls)
