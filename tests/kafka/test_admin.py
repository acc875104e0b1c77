"""The Kafka admin API on both servers (real Restate 1.7.12 and Perdure) against a Tansu broker:
clusters and subscriptions, statuses, Location headers, bodies compared as maps, redaction, and every
error Restate answers with."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.kafka.support import Sinks

pytestmark = pytest.mark.kafka
SERDE = "Failed to deserialize the JSON body into the target type: "
META = "META0009"


def _post(sinks: Sinks, path: str, body: Any) -> httpx.Response:
    return httpx.post(f"{sinks.server.admin_url}{path}", json=body, timeout=30)


def _error(resp: httpx.Response, status: int, message: str, code: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json() == {"message": message, "restate_code": code}


def test_cluster_lifecycle_and_redaction(sinks: Sinks) -> None:
    admin = sinks.server.admin_url
    props = {"bootstrap.servers": sinks.broker.bootstrap, "sasl.password": "hunter2", "client.id": "x"}
    resp = _post(sinks, "/kafka-clusters", {"name": "second", "properties": props})
    assert resp.status_code == 201, resp.text
    assert resp.headers["location"] == "kafka-clusters/second"
    created = resp.json()
    assert set(created) == {"name", "properties", "created_at"}
    assert created["properties"] == {**props, "sasl.password": "***"}
    assert created["created_at"].endswith("Z") and len(created["created_at"].split(".")[1]) == 10
    listed = httpx.get(f"{admin}/kafka-clusters").json()["clusters"]
    assert {c["name"] for c in listed} >= {"local", "second"}
    assert "hunter2" not in httpx.get(f"{admin}/kafka-clusters").text
    detail = httpx.get(f"{admin}/kafka-clusters/second").json()
    assert detail == {**created, "subscriptions": []}
    new_props = {"bootstrap.servers": sinks.broker.bootstrap, "ssl.key.pem": "secret-key"}
    patched = httpx.patch(f"{admin}/kafka-clusters/second", json={"properties": new_props})
    assert patched.status_code == 200, patched.text
    assert patched.json() == {**created, "properties": {**new_props, "ssl.key.pem": "***"}}
    assert httpx.delete(f"{admin}/kafka-clusters/second").status_code == 202
    _error(
        httpx.get(f"{admin}/kafka-clusters/second"),
        404,
        "The requested Kafka cluster 'second' does not exist",
    )


def test_cluster_errors(sinks: Sinks) -> None:
    admin = sinks.server.admin_url
    bs = {"bootstrap.servers": sinks.broker.bootstrap}
    _error(
        _post(sinks, "/kafka-clusters", {"name": "local", "properties": bs}),
        409,
        "kafka cluster 'local' already exists in schema registry",
    )
    _error(
        _post(sinks, "/kafka-clusters", {"name": "nobrokers", "properties": {"client.id": "x"}}),
        400,
        "kafka cluster 'nobrokers' properties must contain either 'bootstrap.servers' or "
        "'metadata.broker.list'",
    )
    _error(
        httpx.patch(f"{admin}/kafka-clusters/nope", json={"properties": bs}),
        404,
        "not found in the schema registry: kafka cluster 'nope'",
    )
    _error(
        httpx.delete(f"{admin}/kafka-clusters/nope"),
        404,
        "not found in the schema registry: kafka cluster named 'nope'",
    )
    resp = _post(sinks, "/kafka-clusters", {"name": "a b", "properties": bs})
    assert (resp.status_code, resp.text) == (
        422,
        f"{SERDE}name: invalid uri character at line 1 column 13",
    )
    resp = _post(sinks, "/kafka-clusters", {"name": "a"})
    assert (resp.status_code, resp.text) == (
        422,
        f"{SERDE}missing field `properties` at line 1 column 12",
    )


def test_subscription_lifecycle(sinks: Sinks) -> None:
    admin = sinks.server.admin_url
    topic = sinks.topic(1)
    resp = _post(
        sinks,
        "/subscriptions",
        {
            "source": f"kafka://local/{topic}",
            "sink": "service://KCounter/add",
            "options": {"auto.offset.reset": "earliest"},
        },
    )
    assert resp.status_code == 201, resp.text
    sub = resp.json()
    sub_id = sub["id"]
    assert resp.headers["location"] == f"subscriptions/{sub_id}"
    assert sub_id.startswith("sub_1") and len(sub_id) == 27
    assert sub == {
        "id": sub_id,
        "source": f"kafka://local/{topic}",
        "sink": "service://KCounter/add",
        "options": {"auto.offset.reset": "earliest", "group.id": sub_id, "client.id": "restate"},
    }
    assert httpx.get(f"{admin}/subscriptions/{sub_id}").json() == sub
    listed = httpx.get(f"{admin}/subscriptions", params={"source": f"kafka://local/{topic}"}).json()
    assert listed == {"subscriptions": [sub]}
    both = {"source": f"kafka://local/{topic}", "sink": "service://KLog/note"}
    assert httpx.get(f"{admin}/subscriptions", params=both).json() == {"subscriptions": []}
    own = httpx.get(f"{admin}/subscriptions", params={"sink": "service://KCounter/add"}).json()[
        "subscriptions"
    ]
    assert sub in own
    detail = httpx.get(f"{admin}/kafka-clusters/local", params={"include_subscriptions": "true"}).json()
    assert sub in detail["subscriptions"]
    assert httpx.get(f"{admin}/kafka-clusters/local").json()["subscriptions"] == []
    refused = httpx.delete(f"{admin}/kafka-clusters/local")
    assert refused.status_code == 409, refused.text
    message = refused.json()["message"]
    assert message.startswith("Removing the kafka cluster 'local' leads to subscription 'sub_1")
    assert message.endswith("' being orphan. Remove the subscription first, or use the 'force' flag.")
    resp = httpx.delete(f"{admin}/subscriptions/{sub_id}")
    assert resp.status_code == 202 and resp.content == b""
    _error(
        httpx.get(f"{admin}/subscriptions/{sub_id}"),
        404,
        f"The requested subscription '{sub_id}' does not exist",
    )
    _error(
        httpx.delete(f"{admin}/subscriptions/{sub_id}"),
        404,
        f"not found in the schema registry: subscription with id '{sub_id}'",
    )


def test_group_id_option_is_kept(sinks: Sinks) -> None:
    topic = sinks.topic(1)
    resp = _post(
        sinks,
        "/subscriptions",
        {
            "source": f"kafka://local/{topic}",
            "sink": "service://KLog/note",
            "options": {"group.id": "mine", "client.id": "me"},
        },
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["options"] == {"group.id": "mine", "client.id": "me"}
    sinks.unsubscribe(resp.json()["id"])


def _expected(source: str, sink: str, why: str) -> tuple[str, str | None]:
    if why == "cluster":
        return "Kafka cluster 'nope' not found. Available clusters: [\"local\"]", None
    if why == "sink":
        return (
            f"[{META}] invalid sink URI '{sink}': cannot find service/handler specified in the sink URI.",
            META,
        )
    if why == "source-scheme":
        scheme = "must have a scheme segment, with supported schemes: [kafka]."
        return f"[{META}] invalid source URI '{source}': {scheme}", META
    scheme = "must have a scheme segment, with supported schemes: [service]."
    return f"[{META}] invalid sink URI '{sink}': {scheme}", META


@pytest.mark.parametrize(
    ("source", "sink", "why"),
    [
        ("kafka://nope/t", "service://KCounter/add", "cluster"),
        ("kafka://local/t", "service://Nope/add", "sink"),
        ("kafka://local/t", "service://KCounter/nope", "sink"),
        ("http://local/t", "service://KCounter/add", "source-scheme"),
        ("kafka:t", "service://KCounter/add", "source-scheme"),
        ("kafka://local/t", "svc://KCounter/add", "sink-scheme"),
    ],
)
def test_subscription_validation(sinks: Sinks, source: str, sink: str, why: str) -> None:
    message, code = _expected(source, sink, why)
    _error(_post(sinks, "/subscriptions", {"source": source, "sink": sink}), 400, message, code)


@pytest.mark.parametrize(
    ("body", "text"),
    [
        (
            {"source": "kafka:///t", "sink": "service://KCounter/add"},
            "source: invalid format at line 1 column 22",
        ),
        ({"source": "kafka://local/t", "sink": "service:///add"}, "sink: invalid format at line 1 column 51"),
        (
            {"source": "kafka://a b/t", "sink": "service://A/b"},
            "source: invalid uri character at line 1 column 25",
        ),
        ({"source": "kafka://a/t"}, "missing field `sink` at line 1 column 24"),
        (
            {"source": "kafka://a/t", "sink": "service://A/b", "options": {"a": 1}},
            "options.a: invalid type: integer `1`, expected a string at line 1 column 63",
        ),
    ],
)
def test_subscription_body_errors(sinks: Sinks, body: dict[str, Any], text: str) -> None:
    raw = httpx.Request("POST", "http://x", json=body).content
    resp = httpx.post(
        f"{sinks.server.admin_url}/subscriptions", content=raw, headers={"content-type": "application/json"}
    )
    assert (resp.status_code, resp.text) == (
        422,
        f"{SERDE}{text}",
    ), raw


@pytest.mark.parametrize(
    ("sub_id", "problem"),
    [
        ("sub_1abc", "bad length"),
        ("abc", "bad format"),
        ("dp_10OtEnzkIGPFrELzehuTJ9n", "id doesn't match the expected type"),
        ("sub_20OtEnzkIGPFrELzehuTJ9n", "unrecognized codec version"),
        ("sub_10OtEnzkIGPFrELzehuTJ9-", "base62 decode error"),
    ],
)
def test_bad_subscription_ids(sinks: Sinks, sub_id: str, problem: str) -> None:
    for method in ("GET", "DELETE"):
        resp = httpx.request(method, f"{sinks.server.admin_url}/subscriptions/{sub_id}")
        assert (resp.status_code, resp.text) == (
            400,
            f"Invalid URL: Cannot parse `subscription` with value `{sub_id}`: {problem}",
        )
