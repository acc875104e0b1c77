"""Admin routes for Kafka: `/kafka-clusters` and `/subscriptions` with Restate 1.7's paths, statuses,
bodies and errors, plus Perdure's `PATCH /subscriptions/{id}/pause|resume`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from perdure.server.admin.app import _json_body, admin_error, json_response, text_error
from perdure.server.kafka.body import Body
from perdure.server.kafka.catalog import KafkaCatalog
from perdure.server.kafka.model import KafkaAdminError, cluster_json, subscription_id_error, subscription_json

Handler = Callable[[Request], Awaitable[Response]]


async def _body(request: Request) -> Body:
    await _json_body(request)  # 415 without a JSON content type, 400 for malformed JSON
    return Body(await request.body())


def _subscription_id(request: Request) -> str:
    text: str = request.path_params["id"]
    problem = subscription_id_error(text)
    if problem is not None:
        raise KafkaAdminError(
            400, f"Invalid URL: Cannot parse `subscription` with value `{text}`: {problem}", plain=True
        )
    return text


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


def _guard(fn: Handler) -> Handler:
    async def wrapped(request: Request) -> Response:
        try:
            return await fn(request)
        except KafkaAdminError as exc:
            if exc.plain:
                return text_error(exc.status, exc.message)
            return admin_error(exc.status, exc.message, exc.code)

    return wrapped


def kafka_routes(catalog: KafkaCatalog) -> list[BaseRoute]:
    def cluster_detail(name: str, with_subs: bool) -> dict[str, Any]:
        cluster = catalog.cluster(name)
        assert cluster is not None
        out = cluster_json(cluster, catalog.cluster_info(name))
        subs = [s for s in catalog.subscriptions() if s.cluster == name] if with_subs else []
        out["subscriptions"] = [subscription_json(s) for s in subs]
        return out

    async def create_cluster(request: Request) -> Response:
        body = await _body(request)
        name = body.string("name", uri=True)
        props = body.string_map("properties", required=True)
        cluster = await catalog.add_cluster(name, props, int(time.time() * 1000))
        return json_response(cluster_json(cluster), 201, {"location": f"kafka-clusters/{cluster.name}"})

    async def list_clusters(_: Request) -> Response:
        return json_response({"clusters": [cluster_json(c, info) for c, info in catalog.clusters()]})

    async def get_cluster(request: Request) -> Response:
        name = request.path_params["name"]
        if catalog.cluster(name) is None:
            raise KafkaAdminError(404, f"The requested Kafka cluster '{name}' does not exist")
        return json_response(cluster_detail(name, _flag(request, "include_subscriptions")))

    async def patch_cluster(request: Request) -> Response:
        name = request.path_params["name"]
        props = (await _body(request)).string_map("properties", required=True)
        cluster = await catalog.update_cluster(name, props)
        return json_response(cluster_json(cluster, catalog.cluster_info(name)))

    async def delete_cluster(request: Request) -> Response:
        await catalog.remove_cluster(request.path_params["name"], _flag(request, "force"))
        return Response(status_code=202)

    async def create_subscription(request: Request) -> Response:
        body = await _body(request)
        source, sink = body.string("source", uri=True), body.string("sink", uri=True)
        options = body.string_map("options", required=False)
        sub = await catalog.add_subscription(source, sink, options)
        return json_response(subscription_json(sub), 201, {"location": f"subscriptions/{sub.id}"})

    async def list_subscriptions(request: Request) -> Response:
        subs = catalog.subscriptions(request.query_params.get("source"), request.query_params.get("sink"))
        return json_response({"subscriptions": [subscription_json(s) for s in subs]})

    async def get_subscription(request: Request) -> Response:
        sub_id = _subscription_id(request)
        sub = catalog.subscription(sub_id)
        if sub is None:
            raise KafkaAdminError(404, f"The requested subscription '{sub_id}' does not exist")
        return json_response(subscription_json(sub))

    async def delete_subscription(request: Request) -> Response:
        await catalog.remove_subscription(_subscription_id(request))
        return Response(status_code=202)

    async def pause_subscription(request: Request) -> Response:
        return json_response(subscription_json(await catalog.set_paused(_subscription_id(request), True)))

    async def resume_subscription(request: Request) -> Response:
        return json_response(subscription_json(await catalog.set_paused(_subscription_id(request), False)))

    return [
        Route("/kafka-clusters", _guard(create_cluster), methods=["POST"]),
        Route("/kafka-clusters", _guard(list_clusters), methods=["GET"]),
        Route("/kafka-clusters/{name}", _guard(get_cluster), methods=["GET"]),
        Route("/kafka-clusters/{name}", _guard(patch_cluster), methods=["PATCH"]),
        Route("/kafka-clusters/{name}", _guard(delete_cluster), methods=["DELETE"]),
        Route("/subscriptions", _guard(create_subscription), methods=["POST"]),
        Route("/subscriptions", _guard(list_subscriptions), methods=["GET"]),
        Route("/subscriptions/{id}", _guard(get_subscription), methods=["GET"]),
        Route("/subscriptions/{id}", _guard(delete_subscription), methods=["DELETE"]),
        Route("/subscriptions/{id}/pause", _guard(pause_subscription), methods=["PATCH"]),
        Route("/subscriptions/{id}/resume", _guard(resume_subscription), methods=["PATCH"]),
    ]
