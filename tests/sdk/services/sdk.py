"""The SDK under test, chosen by the SDK_UNDER_TEST env var: `perdure` (default) or `official`.
Scenario files do `from tests.sdk.services.sdk import restate` and nothing else SDK-specific."""

from __future__ import annotations

import os
from types import ModuleType

SDK_ENV = "SDK_UNDER_TEST"
SDKS = ("perdure", "official")

restate: ModuleType
if os.environ.get(SDK_ENV, "perdure") == "official":
    import restate
else:
    import perdure as restate

__all__ = ["restate"]
