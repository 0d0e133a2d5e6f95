"""Bounded decoding of a record's value into an :class:`schemas.InputMessage`.

Everything that could be expensive or unsafe to parse is refused *before* parsing, with its
own dead-letter code: a value over ``max_value_bytes`` (``value_too_large``) and JSON nested
deeper than ``max_json_depth`` (``nesting_too_deep``). The JSON itself is parsed by orjson
(RFC 8259, strict: ``NaN``/``Infinity``, numbers that overflow a double and lone surrogate
escapes are ``invalid_json``), which is written in Rust, does not recurse on the Python
stack and refuses nesting beyond 1,024 levels on its own; measured against the standard
library's ``json`` on the real streams by ``python -m bench`` (``docs/performance.md``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from consumer.field_map import FieldMap
from consumer.isolation import InvalidRecordError
from schemas import (
    DEFAULT_MAX_TEXT_BYTES,
    SUPPORTED_SCHEMA_VERSIONS,
    ErrorCode,
    InputMessage,
    error_lines,
)

#: Default cap on a whole record value in bytes: Kafka's default ``max.message.bytes``
#: (1 MiB), which also fits a text at ``DEFAULT_MAX_TEXT_BYTES`` JSON-escaped several times.
DEFAULT_MAX_VALUE_BYTES = 1_048_576
#: Default cap on JSON nesting (the input object is level 1, ``metadata`` level 2).
DEFAULT_MAX_JSON_DEPTH = 64
#: orjson refuses deeper documents whatever the setting.
ORJSON_MAX_DEPTH = 1_024

#: A JSON string literal, or one structural bracket (used only to measure nesting depth).
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_OPENERS = frozenset(b"[{")


@dataclass(frozen=True, slots=True)
class RecordLimits:
    """Caps applied to every record before and while it is parsed.

    Attributes:
        max_value_bytes: Largest record value read at all (bytes).
        max_json_depth: Deepest JSON nesting accepted (levels; ``{}`` is 1), at most
            :data:`ORJSON_MAX_DEPTH`.
        max_text_bytes: Largest ``title + text`` classified (UTF-8 bytes).
    """

    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES


def parse_input(
    value: bytes | None, limits: RecordLimits = RecordLimits(), fields: FieldMap | None = None
) -> InputMessage:
    """Validate a JSON record value against the input schema, within ``limits``.

    Args:
        value: The record's value (``None`` for a tombstone).
        limits: Size and depth caps.
        fields: Where the input fields are in the producer's object (default: own names).

    Raises:
        InvalidRecordError: with code ``null_value``, ``value_too_large``, ``nesting_too_deep``,
            ``not_utf8``, ``invalid_json``, ``not_an_object``, ``unsupported_schema_version``,
            ``schema_violation`` or ``text_too_large``.
    """
    value = check_value_size(value, limits)
    check_depth(value, limits.max_json_depth)
    if fields is None:
        return validate_input(loads_json(value), limits)
    return validate_input(fields.apply(loads_json(value)), limits, fields.sources)


def check_value_size(value: bytes | None, limits: RecordLimits) -> bytes:
    """``value`` itself if it is there and within ``max_value_bytes`` (checked before decoding).

    Raises:
        InvalidRecordError: ``null_value`` (a tombstone) or ``value_too_large``.
    """
    if value is None:
        raise InvalidRecordError(ErrorCode.NULL_VALUE, "message value is null (tombstone)")
    if len(value) > limits.max_value_bytes:
        raise InvalidRecordError(
            ErrorCode.VALUE_TOO_LARGE,
            f"value is {len(value)} bytes; the limit is {limits.max_value_bytes} bytes "
            "(max_value_bytes)",
        )
    return value


def validate_input(
    obj: object, limits: RecordLimits, sources: Mapping[str, str] | None = None
) -> InputMessage:
    """A decoded value (JSON object, Avro/Protobuf record as a dict) as the input message.

    The rules every input format shares: an object, a supported ``schema_version``, the
    :class:`schemas.InputMessage` schema (strict), ``title + text`` within ``max_text_bytes``.

    Args:
        obj: The decoded value, its fields already picked (:class:`consumer.field_map.FieldMap`).
        limits: The text-size cap.
        sources: The producer's name of renamed fields, named in schema-violation reasons
            (``"text (field 'body'): Field required"``).

    Raises:
        InvalidRecordError: ``not_an_object``, ``unsupported_schema_version``,
            ``schema_violation`` or ``text_too_large``.
    """
    if not isinstance(obj, dict):
        raise InvalidRecordError(
            ErrorCode.NOT_AN_OBJECT, f"value must be a JSON object, got {type(obj).__name__}"
        )
    version = obj.get("schema_version")
    # list/dict versions are unhashable: `in` a frozenset would raise TypeError (found by fuzzing)
    if version is not None and (
        isinstance(version, list | dict) or version not in SUPPORTED_SCHEMA_VERSIONS
    ):
        raise InvalidRecordError(
            ErrorCode.UNSUPPORTED_SCHEMA_VERSION,
            f"schema_version {version!r} is not supported (supported: "
            f"{sorted(SUPPORTED_SCHEMA_VERSIONS)})",
        )
    try:
        message = InputMessage.model_validate(obj)
    except ValidationError as exc:
        lines = error_lines(exc)
        if sources:
            lines = [_name_source(line, sources) for line in lines]
        raise InvalidRecordError(ErrorCode.SCHEMA_VIOLATION, "; ".join(lines)) from None
    size = len(message.document.encode("utf-8"))
    if size > limits.max_text_bytes:
        raise InvalidRecordError(
            ErrorCode.TEXT_TOO_LARGE,
            f"title + text is {size} bytes in UTF-8; the limit is {limits.max_text_bytes} bytes "
            "(max_text_bytes)",
        )
    return message


def _name_source(line: str, sources: Mapping[str, str]) -> str:
    field, sep, rest = line.partition(":")
    top = field.split(".", 1)[0]
    if top not in sources:
        return line
    return f"{top} (field {sources[top]!r}){field[len(top) :]}{sep}{rest}"


def json_depth(value: bytes, stop_after: int | None = None) -> int:
    """Deepest nesting of JSON arrays/objects in ``value`` (``0`` for a scalar, ``{}`` is 1).

    Brackets inside string literals are skipped. Scanning ends as soon as the depth exceeds
    ``stop_after``, so a hostile document costs at most ``stop_after`` brackets of work.
    Invalid JSON gets a best-effort answer (the parser refuses it anyway).
    """
    depth = deepest = 0
    for match in _TOKEN.finditer(value):
        token = match.group()
        if len(token) != 1:
            continue  # a string literal
        if token[0] in _OPENERS:
            depth += 1
            if depth > deepest:
                deepest = depth
                if stop_after is not None and deepest > stop_after:
                    break
        elif depth:
            depth -= 1
    return deepest


def check_depth(value: bytes, max_depth: int) -> None:
    """Refuse JSON nested deeper than ``max_depth`` before any parser sees it.

    Raises:
        InvalidRecordError: ``nesting_too_deep``.
    """
    # Fast path: a document with at most max_depth opening brackets cannot nest deeper.
    if value.count(b"[") + value.count(b"{") <= max_depth:
        return
    depth = json_depth(value, stop_after=max_depth)
    if depth > max_depth:
        raise InvalidRecordError(
            ErrorCode.NESTING_TOO_DEEP,
            f"JSON nesting exceeds {max_depth} levels (max_json_depth)",
        )


def loads_json(value: bytes) -> Any:
    """Parse ``value`` with orjson (RFC 8259, strict).

    Raises:
        InvalidRecordError: ``not_utf8`` or ``invalid_json``.
    """
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        json_error = str(exc)
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecordError(
            ErrorCode.NOT_UTF8, f"value is not valid UTF-8 (byte {exc.start}: {exc.reason})"
        ) from None
    raise InvalidRecordError(ErrorCode.INVALID_JSON, f"value is not valid JSON: {json_error}")
