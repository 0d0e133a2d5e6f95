"""The wire-format stage: the Avro path against plain JSON, side by side on one broker.

Stage 4's saturated drain (:func:`bench.e2e.saturated_drain`) twice per stream, on the same broker,
bundle and texts: once with ``{"id", "text"}`` JSON in and prediction JSON out (the default),
once in the Confluent Schema Registry wire format both ways — values written by a stock
``AvroSerializer`` with a producer's own schema (``news.Article``: ``article_id``, ``body``),
read with ``--input-format avro --input-fields``, predictions written with
``--output-format avro`` and read back with a stock ``AvroDeserializer``. The registry is a
local Apicurio (:mod:`deploy.local_registry`) unless ``--schema-registry-url`` names one.
What the ratio measures is the serdes' per-record cost (confluent-kafka's deserializer and
serializer, ~60 and ~40 µs a record measured in-process) against orjson (~2-5 µs).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.e2e import saturated_drain
from bench.kafka_io import E2EError

#: The producer's own Avro schema of the stage (not the service's field names).
ARTICLE_SCHEMA = json.dumps(
    {
        "type": "record",
        "name": "Article",
        "namespace": "news",
        "fields": [{"name": "article_id", "type": "string"}, {"name": "body", "type": "string"}],
    }
)
INPUT_FIELDS = json.dumps({"id": "article_id", "text": "body"})


@contextmanager
def registry(url: str | None, state_root: Path) -> Iterator[str]:
    """``url``, or a local Apicurio registry started for the stage (stopped and wiped after).

    Raises:
        E2EError: the local registry did not start.
    """
    if url:
        yield url
        return
    from deploy import local_kafka, local_registry

    state = state_root / "registry"
    port = local_kafka.find_free_port_pair()
    try:
        started = local_registry.start(port=port, state_dir=state, timeout_s=120)
    except local_registry.LocalRegistryError as exc:
        raise E2EError(f"the local Schema Registry did not start: {exc}") from exc
    try:
        yield started
    finally:
        local_registry.stop(state_dir=state, wipe=True)


def avro_codecs(url: str) -> tuple[Callable[[str, str], bytes], Callable[[bytes], Any]]:
    """``(encode, decode)`` of the Avro run: producer-side Avro in, Avro predictions out.

    The producer registers its schema under ``bench-articles-value``: a value's schema id
    resolves whatever topic it is then written to.
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    client = SchemaRegistryClient({"url": url})
    serializer = AvroSerializer(client, ARTICLE_SCHEMA)
    deserializer = AvroDeserializer(client)

    def encode(message_id: str, text: str) -> bytes:
        ctx = SerializationContext("bench-articles", MessageField.VALUE)
        value: bytes | None = serializer({"article_id": message_id, "body": text}, ctx)
        if value is None:
            raise E2EError("the Avro serializer wrote nothing")
        return value

    def decode(value: bytes) -> dict[str, Any]:
        record: dict[str, Any] = deserializer(value, None)
        for name in ("produced_at", "input_timestamp"):
            if record.get(name) is not None:
                record[name] = record[name].isoformat()
        return record

    return encode, decode


def run(
    bootstrap: str,
    bundle: Path,
    name: str,
    texts: Sequence[str],
    messages: int,
    warmup: int,
    max_batch_size: int,
    log_dir: Path,
    registry_url: str,
) -> dict[str, Any]:
    """Both formats' saturated drain of ``messages`` (see the module docstring).

    Returns:
        ``{"json": run, "avro": run, "avro_vs_json": ratio of saturated msgs/s}``.

    Raises:
        E2EError: a run failed.
    """
    encode, decode = avro_codecs(registry_url)
    out: dict[str, Any] = {}
    for fmt in ("json", "avro"):
        extra = (
            []
            if fmt == "json"
            else [
                "--input-format", "avro",
                "--output-format", "avro",
                "--input-fields", INPUT_FIELDS,
                "--schema-registry-url", registry_url,
            ]
        )  # fmt: skip
        out[fmt] = saturated_drain(
            bootstrap,
            bundle,
            f"{name}-{fmt}",
            texts,
            messages=messages,
            warmup=warmup,
            max_batch_size=max_batch_size,
            log_dir=log_dir,
            extra_args=extra,
            encode=None if fmt == "json" else encode,
            decode=None if fmt == "json" else decode,
        )
    rates = [out[f]["saturation"]["msgs_per_s"] for f in ("json", "avro")]
    out["avro_vs_json"] = rates[1] / rates[0] if rates[0] else float("nan")
    return out
