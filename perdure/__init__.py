"""Perdure: a durable-execution server and SDK, wire-compatible with Restate.

`import perdure` gives the SDK's public API (the same names as restate-sdk);
the server lives in `perdure.server` and is not imported here."""

from perdure.sdk import *  # noqa: F403 - the SDK's public API is the package's
from perdure.sdk import __all__ as __all__
from perdure.sdk.version import SDK_VERSION as __version__  # noqa: F401
