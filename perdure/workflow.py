"""`restate.workflow` compatibility: the Workflow definition, so `from perdure.workflow import ...`
works wherever a service imports `from restate.workflow import ...`."""

from perdure.sdk.service import Workflow

__all__ = ["Workflow"]
