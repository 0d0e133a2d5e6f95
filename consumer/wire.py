"""The service's wire formats, decided once at start-up: how records are read and written."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from consumer.decoding import InputDecoder, JsonInput, input_decoder
from consumer.encoding import JSON_OUTPUT, OutputEncoder, output_encoder
from consumer.registry import RegistryStartupError, reachable_client
from consumer.settings import Settings
from schemas.published import Kind


@dataclass(frozen=True)
class WireFormat:
    """How the service reads its input and writes its outputs.

    Attributes:
        decode: One record's value → its input message (:mod:`consumer.decoding`).
        encode: Predictions and dead letters → output values (:mod:`consumer.encoding`).
    """

    decode: InputDecoder
    encode: OutputEncoder

    @classmethod
    def json(cls, settings: Settings | None = None) -> WireFormat:
        """Plain JSON in and out (no registry), with ``settings``' caps and field map."""
        if settings is None:
            return cls(JsonInput(), JSON_OUTPUT)
        return cls(JsonInput(settings.record_limits, settings.input_field_map), JSON_OUTPUT)


def build_wire_format(settings: Settings) -> WireFormat:
    """The formats of ``settings``; with a registry: checked, output schemas registered.

    Raises:
        RegistryStartupError: the registry is unreachable, refuses the credentials or an
            output schema, or the Protobuf message class cannot be imported.
    """
    if not settings.uses_registry:
        return WireFormat.json(settings)
    url = settings.schema_registry_url or ""
    client = reachable_client(settings)
    try:
        decode = input_decoder(settings, client)
    except ValueError as exc:
        raise RegistryStartupError(str(exc)) from None
    outputs: dict[str, Kind] = {settings.output_topic: "prediction"}
    if settings.review_topic:
        outputs[settings.review_topic] = "prediction"
    outputs[settings.dead_letter_topic] = "dead_letter"
    encode = output_encoder(settings, client, outputs)
    structlog.get_logger("consumer").info(
        "wire_format",
        input_format=settings.input_format,
        output_format=settings.output_format,
        schema_registry=url,
    )
    return WireFormat(decode, encode)
