"""Where each field of the input message is in a producer's own record (``--input-fields``).

Teams that produce with a Schema Registry keep their own schemas: an article may carry its
text in ``body`` and its id in ``article_id``, or nest them (``payload.body``). A
:class:`FieldMap` picks the :class:`schemas.InputMessage` fields out of the decoded record
(a dict: a JSON object, an Avro record, a Protobuf message as a dict) before validation, so
every input format goes through the same schema check (:func:`consumer.parsing.validate_input`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from schemas import InputMessage

#: The input message's fields, in schema order.
INPUT_FIELDS: tuple[str, ...] = tuple(InputMessage.model_fields)


class FieldMap:
    """The producer's field path of each input-message field.

    Args:
        paths: Input-message field → the producer's field, dot-separated for nested records
            (``{"text": "payload.body", "id": "article_id"}``); unnamed fields keep their
            own name.
        coerce_integer_id: Accept an integer ``id`` (an Avro ``long``, a Protobuf ``int32``)
            as its decimal string. JSON input stays strict (``"id": 7`` is a schema
            violation, as before this setting existed).

    Raises:
        ValueError: a key is not an input-message field, or a path is empty or has an
            empty segment.
    """

    def __init__(self, paths: Mapping[str, str], coerce_integer_id: bool = False) -> None:
        unknown = sorted(set(paths) - set(INPUT_FIELDS))
        if unknown:
            raise ValueError(f"{unknown} are not input fields (known: {list(INPUT_FIELDS)})")
        for name, path in paths.items():
            if not path or any(not part for part in path.split(".")):
                raise ValueError(f"{name}: {path!r} is not a field path (a.b.c)")
        self._paths = {name: tuple(paths.get(name, name).split(".")) for name in INPUT_FIELDS}
        self.coerce_integer_id = coerce_integer_id
        self.identity = all(path == (name,) for name, path in self._paths.items())
        #: The producer's name of each renamed field (for error messages).
        self.sources = {n: ".".join(p) for n, p in self._paths.items() if p != (n,)}

    def apply(self, record: object) -> object:
        """The input-message fields picked out of ``record`` (a non-dict is returned as is).

        A field whose path is missing (or runs through a value that is not a dict) is left
        out, so validation reports it as missing.
        """
        if not isinstance(record, dict):
            return record
        if self.identity and not self.coerce_integer_id:
            return record
        picked: dict[str, Any] = {}
        for name, path in self._paths.items():
            value: Any = record
            for part in path:
                if not isinstance(value, dict) or part not in value:
                    break
                value = value[part]
            else:
                picked[name] = value
        number = picked.get("id")
        if self.coerce_integer_id and isinstance(number, int) and not isinstance(number, bool):
            picked["id"] = str(number)
        return picked
