"""Avro schemas derived from the pydantic wire models, so the two can never drift apart.

:func:`avro_schema` walks a model's fields and writes the Avro record schema that carries the
same values (Avro 1.11 specification, https://avro.apache.org/docs/1.11.1/specification/):

============================  ====================================================
pydantic field type           Avro type
============================  ====================================================
``str``                       ``string``
``int``                       ``long`` (offsets need 64 bits)
``float``                     ``double``
``bool``                      ``boolean``
``datetime``                  ``long`` with logical type ``timestamp-micros`` (UTC)
``StrEnum``                   ``enum`` (symbols = values; the symbol ``default`` lets a
                              reader with an older schema read a newer symbol)
``Literal["a", "b"]``         ``string`` (the values need not be Avro names, e.g.
                              ``"utf-8"``)
``list[X]``                   ``array`` of X
nested ``BaseModel``          ``record`` (defined once, then referenced by full name)
``X | None``                  ``["null", X]`` with default ``null``
============================  ====================================================

A field with a default keeps it (``None`` → ``null``); a field without one has no Avro
default. Field ``description`` becomes ``doc``. Types outside the table raise
:class:`TypeError`: extend the table rather than emit a schema that loses data.
"""

from __future__ import annotations

import types
import typing
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

#: Namespace of every named type the project publishes.
NAMESPACE = "stream_text_classifier"

#: Symbol an enum reader falls back to for a symbol it does not know, per enum class.
ENUM_DEFAULTS: dict[str, str] = {"ErrorCode": "unprocessable"}


def avro_schema(model: type[BaseModel], namespace: str = NAMESPACE) -> dict[str, Any]:
    """The Avro record schema of ``model`` (a JSON-ready ``dict``).

    Args:
        model: A pydantic model class whose fields use the types of the module's table.
        namespace: Avro namespace of the record and every named type inside it.

    Raises:
        TypeError: a field's type has no Avro counterpart here.
    """
    schema: dict[str, Any] = _Converter(namespace).record(model)
    return schema


class _Converter:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.defined: set[str] = set()  # named types already written out in this schema

    def record(self, model: type[BaseModel]) -> Any:
        name = model.__name__
        if name in self.defined:
            return f"{self.namespace}.{name}"
        self.defined.add(name)
        schema: dict[str, Any] = {"type": "record", "name": name, "namespace": self.namespace}
        doc = (model.__doc__ or "").strip().split("\n\n")[0]
        if doc:
            schema["doc"] = " ".join(doc.split())
        schema["fields"] = [self.field(n, f) for n, f in model.model_fields.items()]
        return schema

    def field(self, name: str, info: FieldInfo) -> dict[str, Any]:
        annotation = info.annotation
        optional, inner = _split_optional(annotation)
        avro_type = self.type_of(inner, f"{name}")
        field: dict[str, Any] = {"name": name}
        if optional:
            field["type"] = ["null", avro_type]
        else:
            field["type"] = avro_type
        if info.description:
            field["doc"] = info.description
        default = _default_of(info)
        if default is not PydanticUndefined:
            if optional and default is not None:
                raise TypeError(f"{name}: an optional field's default must be None for Avro")
            field["default"] = _avro_default(default)
        return field

    def type_of(self, annotation: Any, where: str) -> Any:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            return self.type_of(typing.get_args(annotation)[0], where)
        if origin is list:
            (item,) = typing.get_args(annotation)
            return {"type": "array", "items": self.type_of(item, f"{where}[]")}
        if origin is Literal:
            if all(isinstance(v, str) for v in typing.get_args(annotation)):
                return "string"
            raise TypeError(f"{where}: only string literals have an Avro type here")
        if isinstance(annotation, type):
            if issubclass(annotation, BaseModel):
                return self.record(annotation)
            if issubclass(annotation, StrEnum):
                return self.enum(annotation)
            if issubclass(annotation, bool):  # before int: bool is an int
                return "boolean"
            if issubclass(annotation, int):
                return "long"
            if issubclass(annotation, float):
                return "double"
            if issubclass(annotation, str):
                return "string"
            if issubclass(annotation, datetime):
                return {"type": "long", "logicalType": "timestamp-micros"}
        raise TypeError(f"{where}: no Avro type for {annotation!r}")

    def enum(self, enum: type[StrEnum]) -> Any:
        name = enum.__name__
        if name in self.defined:
            return f"{self.namespace}.{name}"
        self.defined.add(name)
        schema: dict[str, Any] = {
            "type": "enum",
            "name": name,
            "namespace": self.namespace,
            "symbols": [member.value for member in enum],
        }
        if name in ENUM_DEFAULTS:
            schema["default"] = ENUM_DEFAULTS[name]
        return schema


def _split_optional(annotation: Any) -> tuple[bool, Any]:
    """``(True, X)`` for ``X | None`` / ``Optional[X]``, else ``(False, annotation)``."""
    origin = typing.get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unions other than X | None have no Avro mapping here: {annotation}")
        return len(args) < len(typing.get_args(annotation)), args[0]
    return False, annotation


def _default_of(info: FieldInfo) -> Any:
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return info.default


def _avro_default(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, list) and not value:
        return []
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"no Avro default for {value!r}")
