"""A small OpenAPI 3.1 document of the admin API."""

from __future__ import annotations

from typing import Any

_PATHS = {
    "/health": {"get": "Health check"},
    "/version": {"get": "Server version and admin API levels"},
    "/deployments": {"get": "List deployments", "post": "Register a deployment (runs discovery)"},
    "/deployments/{deployment}": {
        "get": "Get a deployment",
        "delete": "Remove a deployment (force=true)",
        "patch": "Update a deployment's connection details, or re-discover it (overwrite=true)",
    },
    "/services": {"get": "List services"},
    "/services/{service}": {"get": "Get a service", "patch": "Modify a service's options"},
    "/services/{service}/handlers": {"get": "List a service's handlers"},
    "/services/{service}/handlers/{handler}": {"get": "Get a handler"},
    "/invocations/{invocation_id}/cancel": {"patch": "Cancel an invocation"},
    "/invocations/{invocation_id}/kill": {"patch": "Kill an invocation"},
    "/invocations/{invocation_id}/purge": {"patch": "Purge a completed invocation"},
    "/invocations/{invocation_id}/pause": {"patch": "Pause a running or backing-off invocation"},
    "/invocations/{invocation_id}/resume": {
        "patch": "Resume a paused or suspended invocation; retry a backing-off one now"
    },
    "/invocations/{invocation_id}/restart-as-new": {
        "patch": "Restart a completed invocation as a new one (from=entry index keeps a journal prefix)"
    },
    "/invocations/batch": {"post": "One operation over many invocation ids (docs/admin-batch.md)"},
    "/invocations/{invocation_id}": {"delete": "Cancel, kill or purge (mode=Cancel|Kill|Purge)"},
    "/query": {"post": "SQL over live runtime state"},
}


def _operation_id(method: str, path: str) -> str:
    return f"{method}_{path.strip('/').replace('/', '_').replace('{', '').replace('}', '')}"


def admin_openapi(version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, ops in _PATHS.items():
        paths[path] = {
            method: {
                "summary": summary,
                "operationId": _operation_id(method, path),
                "responses": {"200": {"description": "OK"}},
            }
            for method, summary in ops.items()
        }
    return {"openapi": "3.1.0", "info": {"title": "Admin API", "version": version}, "paths": paths}
