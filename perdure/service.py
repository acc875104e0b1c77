"""`restate.service` compatibility: the Service definition, so `from perdure.service import ...`
works wherever a service imports `from restate.service import ...`."""

from perdure.sdk.service import Service

__all__ = ["Service"]
