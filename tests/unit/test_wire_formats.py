"""Wire formats without a registry: published schemas, the failure rule, framing, field maps.

What needs the real Schema Registry and broker (decoding producers' records, the outage,
compatibility) is in tests/integration/test_schema_registry.py.
"""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
import httpx2
import jsonschema
import orjson
import pytest
from confluent_kafka.schema_registry.error import SchemaRegistryError
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from consumer.batch import Batch
from consumer.decoding import JsonInput, check_framing
from consumer.field_map import FieldMap
from consumer.isolation import (
    DependencyUnavailableError,
    InvalidRecordError,
    Rejection,
    isolate,
)
from consumer.lifecycle import BatchState, Lifecycles
from consumer.metrics import DependencyStatus, HealthState, Metrics
from consumer.records import RawRecord, dead_letter
from consumer.registry import SCHEMA_REGISTRY, classify_failure
from consumer.settings import Settings
from consumer.steps import Accepted
from consumer.wire import WireFormat
from consumer.worker import BatchWorker
from schemas import ErrorCode, InputMessage
from schemas.avro import avro_schema
from schemas.prediction_json import prediction_json, prediction_record
from schemas.published import generate, published_schema, stale

_TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
_MOMENT = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)


# -- the published schemas ------------------------------------------------------------------


def test_committed_schemas_are_what_the_models_generate() -> None:
    """A model change without `python -m schemas.published --write` fails here."""
    assert stale() == []
    assert published_schema("prediction", "avro") == generate("prediction", "avro")


@settings(max_examples=150, deadline=None)
@given(
    message_id=_TEXT,
    top=st.lists(st.tuples(_TEXT, st.floats(0.0, 1.0, allow_nan=False)), min_size=1, max_size=4),
    produced_at=_MOMENT,
    latency_ms=st.floats(0.0, 1e6, allow_nan=False),
    low=st.booleans(),
    offset=st.integers(0, 2**63 - 1),
    input_timestamp=st.none() | _MOMENT,
)
def test_predictions_fit_both_published_schemas(
    message_id: str,
    top: list[tuple[str, float]],
    produced_at: datetime,
    latency_ms: float,
    low: bool,
    offset: int,
    input_timestamp: datetime | None,
) -> None:
    """What the consumer writes round-trips through the Avro schema and validates as JSON.

    The JSON Schema serializer does not validate each prediction (1.3 ms each): this is
    the check that what the service builds matches what it publishes.
    """
    args = (message_id, top, "v1", produced_at, latency_ms, low, "t", 2, offset, input_timestamp)
    record = prediction_record(*args)
    avro = fastavro.parse_schema(json.loads(published_schema("prediction", "avro")))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, avro, record)
    buffer.seek(0)
    back = fastavro.schemaless_reader(buffer, avro, avro)
    assert back == record  # timestamp-micros keeps every microsecond of an aware datetime
    json_schema = json.loads(published_schema("prediction", "json-schema"))
    jsonschema.validate(orjson.loads(prediction_json(*args)), json_schema)


def test_dead_letters_fit_both_published_schemas() -> None:
    record = RawRecord("articles", 1, 7, b"\xffkey", b"\xff\x01raw", (("h", b"v"), ("n", None)))
    letter = dead_letter(record, Rejection.of(ErrorCode.UNDECODABLE_PAYLOAD, "bad"))
    avro = fastavro.parse_schema(json.loads(published_schema("dead_letter", "avro")))
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, avro, letter.model_dump())
    buffer.seek(0)
    back = fastavro.schemaless_reader(buffer, avro, avro)
    assert isinstance(back, dict)
    assert back["error_code"] == "undecodable_payload"
    assert back["value"] == {"encoding": "base64", "data": "/wFyYXc="}
    assert back["headers"][1] == {"key": "n", "value": None}
    jsonschema.validate(
        letter.model_dump(mode="json"),
        json.loads(published_schema("dead_letter", "json-schema")),
    )


def test_avro_converter_maps_optional_enum_and_refuses_what_it_cannot_carry() -> None:
    class Article(BaseModel):
        id: str
        title: str | None = None
        tags: list[str] = []
        seen: datetime

    fields = {f["name"]: f for f in avro_schema(Article)["fields"]}
    assert fields["id"] == {"name": "id", "type": "string"}
    assert fields["title"] == {"name": "title", "type": ["null", "string"], "default": None}
    assert fields["tags"]["type"] == {"type": "array", "items": "string"}
    assert fields["tags"]["default"] == []
    assert fields["seen"]["type"] == {"type": "long", "logicalType": "timestamp-micros"}
    letter = json.loads(published_schema("dead_letter", "avro"))
    error_code = next(f for f in letter["fields"] if f["name"] == "error_code")["type"]
    assert error_code["type"] == "enum"
    assert error_code["default"] == "unprocessable"  # an old reader survives a new code
    assert set(error_code["symbols"]) == {code.value for code in ErrorCode}

    class Odd(BaseModel):
        both: int | str

    with pytest.raises(TypeError, match="unions"):
        avro_schema(Odd)
    with pytest.raises(TypeError, match="metadata: no Avro type"):
        avro_schema(InputMessage)  # dict[str, Any]: would lose data


# -- the failure rule -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        (SchemaRegistryError(404, 40403, "Schema not found"), "record", "unknown_schema_id"),
        (SchemaRegistryError(404, 40401, "Subject not found"), "record", "unknown_schema_id"),
        (SchemaRegistryError(404, -1, "<html>proxy</html>"), "dependency", None),
        (SchemaRegistryError(503, 50003, "unavailable"), "dependency", None),
        (SchemaRegistryError(401, 40101, "unauthorized"), "dependency", None),
        (SchemaRegistryError(429, -1, "slow down"), "dependency", None),
        (httpx2.ConnectError("[Errno 111] Connection refused"), "dependency", None),
        (httpx2.ReadTimeout("timed out"), "dependency", None),
        (EOFError("short"), "record", "undecodable_payload"),
        (ValueError("bad union index"), "record", "undecodable_payload"),
    ],
)
def test_a_bad_record_is_told_from_a_registry_outage(
    error: Exception, kind: str, code: str | None
) -> None:
    outcome = classify_failure(error)
    if kind == "dependency":
        assert isinstance(outcome, DependencyUnavailableError)
        assert outcome.dependency == SCHEMA_REGISTRY
    else:
        assert isinstance(outcome, InvalidRecordError)
        assert outcome.code == code


@pytest.mark.parametrize(
    ("value", "header", "reason"),
    [
        (b"\x00\x00\x00\x00\x01payload", 5, None),
        (b"\x01" + b"g" * 16 + b"p", 17, None),
        (b'{"id": "x"}', None, "first byte is 0x7b"),
        (b"", None, "the value is empty"),
        (b"\x00\x00\x00\x00\x01", None, "nothing follows its 5-byte"),
        (b"\x01" + b"g" * 16, None, "nothing follows its 17-byte"),
    ],
)
def test_framing(value: bytes, header: int | None, reason: str | None) -> None:
    if reason is None:
        assert check_framing(value) == header
        return
    with pytest.raises(InvalidRecordError, match=reason) as caught:
        check_framing(value)
    assert caught.value.code is ErrorCode.WRONG_MAGIC_BYTE


# -- field maps -----------------------------------------------------------------------------


def test_field_map_picks_renamed_and_nested_fields() -> None:
    fields = FieldMap({"id": "article_id", "text": "payload.body"}, coerce_integer_id=True)
    record = {"article_id": 42, "payload": {"body": "Shares rose"}, "title": "Markets", "x": 1}
    assert fields.apply(record) == {"id": "42", "text": "Shares rose", "title": "Markets"}
    assert fields.apply({"article_id": True, "payload": "flat"}) == {"id": True}  # no coercion
    assert FieldMap({}).apply(record) is record  # identity: no copy on the JSON hot path


def test_a_missing_mapped_field_is_named_by_its_producer_name() -> None:
    decode = JsonInput(fields=FieldMap({"text": "body"}))
    with pytest.raises(InvalidRecordError, match=r"text \(field 'body'\): Field required"):
        decode(RawRecord("t", 0, 0, None, b'{"id": "a", "text": "ignored"}'))
    assert decode(RawRecord("t", 0, 0, None, b'{"id": "a", "body": "ok"}')).text == "ok"


def test_field_map_refuses_unknown_fields_and_empty_paths() -> None:
    with pytest.raises(ValueError, match="not input fields"):
        FieldMap({"body": "text"})
    with pytest.raises(ValueError, match="not a field path"):
        FieldMap({"text": "a..b"})


# -- settings -------------------------------------------------------------------------------


def test_registry_formats_need_a_url_without_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SCHEMA_REGISTRY_URL", raising=False)
    with pytest.raises(ValidationError, match="need schema_registry_url"):
        Settings(bundle=tmp_path, input_format="avro")
    with pytest.raises(ValidationError, match="credentials in the URL"):
        Settings(bundle=tmp_path, output_format="avro", schema_registry_url="http://u:p@r:8081")
    with pytest.raises(ValidationError, match="module:Class"):
        Settings(bundle=tmp_path, input_format="protobuf", schema_registry_url="http://r:8081")
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "http://registry:8081")
    assert Settings(bundle=tmp_path, input_format="avro").schema_registry_url == (
        "http://registry:8081"
    )


def test_registry_credentials_from_a_file_stay_secret(tmp_path: Path) -> None:
    secret = tmp_path / "auth"
    secret.write_text("svc:s3cret\n")
    s = Settings(
        bundle=tmp_path,
        output_format="avro",
        schema_registry_url="https://registry:8081",
        schema_registry_basic_auth_file=secret,
    )
    assert s.schema_registry_auth is not None
    assert s.schema_registry_auth.get_secret_value() == "svc:s3cret"
    assert "s3cret" not in repr(s)
    secret.write_text("no-colon")
    with pytest.raises(ValidationError, match="user:password"):
        Settings(
            bundle=tmp_path,
            output_format="avro",
            schema_registry_url="https://registry:8081",
            schema_registry_basic_auth_file=secret,
        )


# -- the worker waits out an outage ---------------------------------------------------------


class _Classifier:
    version = "v"
    drift_profile = None
    labels = ("a",)

    def token_ids(self, text: str) -> list[int]:
        return [2, 3]

    def predict_token_ids(self, sequences: Any) -> Any:
        raise AssertionError("prepare_all never runs the model")

    def top_k(self, probabilities: Any, k: int) -> Any:
        raise AssertionError("prepare_all never ranks")


class _FlakyDecoder:
    """Raises DependencyUnavailableError ``failures`` times, then decodes JSON."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self._json = JsonInput()

    def __call__(self, record: RawRecord) -> InputMessage:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise DependencyUnavailableError(SCHEMA_REGISTRY, "unreachable (ConnectError)")
        return self._json(record)


def _worker(tmp_path: Path, decoder: _FlakyDecoder) -> tuple[BatchWorker, Metrics, HealthState]:
    s = Settings(bundle=tmp_path, schema_registry_retry_max_s=0.05)
    metrics, health = Metrics(), HealthState(stuck_after_s=1.0)
    health.model_loaded, health.assigned_partitions = True, 1  # ready but for the registry
    status = DependencyStatus(metrics, health)
    wire = WireFormat(decoder, WireFormat.json().encode)
    return BatchWorker(s, None, wire, status), metrics, health  # type: ignore[arg-type]


def _batch(lives: Lifecycles, n: int) -> Batch:
    records = [
        RawRecord("t", 0, i, None, json.dumps({"id": f"m{i}", "text": "t"}).encode())
        for i in range(n)
    ]
    return Batch.of(records, _Classifier(), lives.new(), 0)  # type: ignore[arg-type]


def test_an_outage_is_waited_out_and_nothing_is_rejected(tmp_path: Path) -> None:
    decoder = _FlakyDecoder(failures=3)
    worker, metrics, health = _worker(tmp_path, decoder)
    seen: list[tuple[bool, str]] = []
    original = DependencyStatus.down

    def spy(self: DependencyStatus, dependency: str, reason: str) -> None:
        original(self, dependency, reason)
        seen.append(health.ready())

    DependencyStatus.down = spy  # type: ignore[method-assign]
    try:
        prepared = worker.prepare_all(_batch(Lifecycles(), 4))
    finally:
        DependencyStatus.down = original  # type: ignore[method-assign]
    assert prepared is not None
    assert all(isinstance(p, Accepted) for p in prepared)
    assert (
        metrics.registry.get_sample_value(
            "classifier_dependency_retries_total", {"dependency": "schema_registry"}
        )
        == 3
    )
    assert (
        metrics.registry.get_sample_value(
            "classifier_dependency_up", {"dependency": "schema_registry"}
        )
        == 1
    )
    assert len(seen) == 3
    assert all(not ready and "schema_registry unavailable" in why for ready, why in seen)
    assert health.ready() == (True, "ok")
    assert health.unavailable == {}
    assert health.live()[0]


def test_a_batch_given_up_while_waiting_is_never_prepared(tmp_path: Path) -> None:
    decoder = _FlakyDecoder(failures=10**9)
    worker, _, health = _worker(tmp_path, decoder)
    lives = Lifecycles()
    batch = _batch(lives, 2)
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(worker.prepare_all(batch)))
    thread.start()
    while decoder.calls < 2:
        thread.join(0.01)
    lives.abandon([batch.life])
    thread.join(5)
    assert not thread.is_alive()
    assert result == [None]
    assert batch.life.state is BatchState.ABANDONED
    live, why = health.live()
    assert live
    assert "waiting for schema_registry" in why


# -- hostile payloads behind a valid header -------------------------------------------------

_ARTICLE_AVRO = json.dumps(
    {
        "type": "record",
        "name": "Article",
        "namespace": "news",
        "fields": [
            {"name": "article_id", "type": "long"},
            {"name": "body", "type": "string"},
            {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
            {"name": "headline", "type": ["null", "string"], "default": None},
        ],
    }
)
_ARTICLE_JSON_SCHEMA = json.dumps(
    {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Article",
        "type": "object",
        "properties": {"article_id": {"type": "integer"}, "body": {"type": "string"}},
        "required": ["article_id", "body"],
    }
)


def _registry_decoder(fmt: str) -> tuple[Any, bytes]:
    """A decoder over confluent-kafka's in-memory registry; the header of its one schema.

    The real registry is in the integration tests; this drives the deserializers' parsing
    with arbitrary payloads, which a real registry adds nothing to.
    """
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry._sync.mock_schema_registry_client import (
        MockSchemaRegistryClient,
    )

    from consumer.decoding import input_decoder

    client = MockSchemaRegistryClient({"url": "mock://hostile"})
    text, kind = (_ARTICLE_AVRO, "AVRO") if fmt == "avro" else (_ARTICLE_JSON_SCHEMA, "JSON")
    schema_id = client.register_schema("in-value", Schema(text, kind))
    s = Settings(
        bundle=Path("."),
        input_format=fmt,
        schema_registry_url="http://unused:8081",
        input_fields={"id": "article_id", "text": "body", "title": "headline"},
    )
    return input_decoder(s, client), b"\x00" + schema_id.to_bytes(4, "big")


@pytest.mark.parametrize("fmt", ["avro", "json-schema"])
@settings(max_examples=120, deadline=None)
@given(payload=st.binary(max_size=200))
def test_no_payload_behind_a_valid_header_escapes_the_guard(fmt: str, payload: bytes) -> None:
    """Whatever follows the header is a message or a known rejection, never `unprocessable`
    (an exception nobody classified) and never a dependency failure (no registry call)."""
    decode, header = _DECODERS.setdefault(fmt, _registry_decoder(fmt))
    outcome = isolate(lambda: decode(RawRecord("in", 0, 0, None, header + payload)))
    if isinstance(outcome, Rejection):
        assert outcome.code in {
            ErrorCode.UNDECODABLE_PAYLOAD,
            ErrorCode.WRONG_MAGIC_BYTE,  # the empty payload: nothing after the header
            ErrorCode.SCHEMA_VIOLATION,
            ErrorCode.TEXT_TOO_LARGE,
            ErrorCode.NOT_AN_OBJECT,
            ErrorCode.NESTING_TOO_DEEP,
        }, outcome
    else:
        assert outcome.text.strip()


_DECODERS: dict[str, tuple[Any, bytes]] = {}


def test_a_good_avro_record_decodes_through_the_field_map() -> None:
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    decode, header = _DECODERS.setdefault("avro", _registry_decoder("avro"))
    schema_id = int.from_bytes(header[1:], "big")
    client = decode._deserialize._registry  # the same in-memory registry
    value = AvroSerializer(client, _ARTICLE_AVRO, conf={"auto.register.schemas": False})(
        {"article_id": 7, "body": "Shares rose", "headline": "Markets"},
        SerializationContext("in", MessageField.VALUE),
    )
    assert value is not None
    assert value[1:5] == schema_id.to_bytes(4, "big")
    message = decode(RawRecord("in", 0, 0, None, value))
    assert (message.id, message.text, message.title) == ("7", "Shares rose", "Markets")
    assert message.document == "Markets Shares rose"
