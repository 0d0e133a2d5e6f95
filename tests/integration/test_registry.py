"""The session's Schema Registry, through confluent-kafka's own client: an outage loses nothing.

Against the local registry (``deploy/local_registry.py``, Apicurio Registry with its H2 database
in a file) a schema registered before a stop still resolves by its id after the start, and
while it is down the client fails with a connection error. With ``SCHEMA_REGISTRY_URL`` given,
the outage test is skipped (the fixture does not own that registry).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import uuid

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tests.integration.conftest import RegistryHandle

ARTICLE_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Article",
        "namespace": "stream_text_classifier.test",
        "fields": [{"name": "id", "type": "string"}, {"name": "text", "type": "string"}],
    }
)


def _connect_errors() -> tuple[type[Exception], ...]:
    """``ConnectError`` of the HTTP libraries the client may use (httpx2 from 2.16 on, httpx)."""
    found: list[type[Exception]] = []
    for name in ("httpx2", "httpx"):
        with contextlib.suppress(ImportError):
            found.append(importlib.import_module(name).ConnectError)
    return tuple(found)


def _fresh_client(url: str) -> SchemaRegistryClient:
    """A client with empty caches (``get_schema`` of one that registered is served locally)."""
    return SchemaRegistryClient({"url": url, "max.retries": 0})


def test_schemas_survive_a_registry_restart(schema_registry: RegistryHandle) -> None:
    schema_registry.require_local()  # before registering anything in someone else's registry
    subject = f"registry-test-{uuid.uuid4().hex[:12]}-value"
    schema_id = SchemaRegistryClient({"url": schema_registry.url}).register_schema(
        subject, Schema(ARTICLE_SCHEMA, "AVRO")
    )
    assert isinstance(schema_id, int)

    schema_registry.stop()
    try:
        with pytest.raises(_connect_errors(), match="Connection refused"):
            _fresh_client(schema_registry.url).get_schema(schema_id)
    finally:
        schema_registry.start()

    client = _fresh_client(schema_registry.url)
    schema = client.get_schema(schema_id)
    assert schema.schema_type == "AVRO"
    assert schema.schema_str is not None
    assert json.loads(schema.schema_str) == json.loads(ARTICLE_SCHEMA)
    assert client.get_latest_version(subject).schema_id == schema_id
    # Registering it again is a no-op that answers the same id.
    assert client.register_schema(subject, Schema(ARTICLE_SCHEMA, "AVRO")) == schema_id


def test_missing_schema_id_is_a_404(schema_registry_url: str) -> None:
    with pytest.raises(SchemaRegistryError) as failure:
        _fresh_client(schema_registry_url).get_schema(2**31 - 1)
    assert failure.value.http_status_code == 404
    assert failure.value.error_code == 40403  # Confluent's "schema not found"
