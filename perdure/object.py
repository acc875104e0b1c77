"""`restate.object` compatibility: the VirtualObject definition, so `from perdure.object import ...`
works wherever a service imports `from restate.object import ...`."""

from perdure.sdk.service import VirtualObject

__all__ = ["VirtualObject"]
