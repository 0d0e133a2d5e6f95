"""The schemas this project publishes to a Schema Registry, committed under ``schemas/published/``.

Predictions and dead letters can be written as Avro or JSON Schema in the Confluent wire
format (``python -m consumer --output-format``); their schemas are generated from the pydantic
models (:mod:`schemas.messages`) — Avro by :func:`schemas.avro.avro_schema`, JSON Schema by
pydantic's ``model_json_schema(mode="serialization")`` (draft 2020-12) — and committed, so a
downstream team can read them without running the project. ``tests/unit/test_published_schemas.py``
fails when a committed file differs from what the models generate; regenerate with::

    python -m schemas.published --write

The files are part of the installed package (package data), which is what the consumer
registers at start-up.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from schemas.avro import avro_schema
from schemas.messages import DeadLetter, Prediction

#: Folder of the committed schema files.
PUBLISHED_DIR = Path(__file__).resolve().parent / "published"

#: What is published: output kind → its wire model.
Kind = Literal["prediction", "dead_letter"]
#: Schema formats published (the registry's ``schemaType`` names are AVRO and JSON).
SchemaFormat = Literal["avro", "json-schema"]

MODELS: dict[Kind, type[BaseModel]] = {"prediction": Prediction, "dead_letter": DeadLetter}
_SUFFIX: dict[SchemaFormat, str] = {"avro": ".avsc", "json-schema": ".schema.json"}
_JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def path_of(kind: Kind, schema_format: SchemaFormat) -> Path:
    """The committed file of ``kind`` in ``schema_format`` (e.g. ``prediction.avsc``)."""
    return PUBLISHED_DIR / f"{kind}{_SUFFIX[schema_format]}"


def generate(kind: Kind, schema_format: SchemaFormat) -> str:
    """The schema text the models generate now (JSON, 2-space indent, trailing newline)."""
    model = MODELS[kind]
    schema: dict[str, Any]
    if schema_format == "avro":
        schema = avro_schema(model)
    else:
        schema = {"$schema": _JSON_SCHEMA_DIALECT, **model.model_json_schema(mode="serialization")}
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def published_schema(kind: Kind, schema_format: SchemaFormat) -> str:
    """The committed schema text of ``kind`` in ``schema_format``.

    Raises:
        FileNotFoundError: the package was installed without its data files.
    """
    return path_of(kind, schema_format).read_text(encoding="utf-8")


def stale() -> list[Path]:
    """Committed files that differ from what the models generate (empty when in step)."""
    return [
        path_of(kind, fmt)
        for kind in MODELS
        for fmt in _SUFFIX
        if not path_of(kind, fmt).exists()
        or path_of(kind, fmt).read_text(encoding="utf-8") != generate(kind, fmt)
    ]


def main(argv: list[str] | None = None) -> int:
    """``python -m schemas.published [--write]``: check (exit 1 when stale) or rewrite the files."""
    parser = argparse.ArgumentParser(prog="python -m schemas.published", description=__doc__)
    parser.add_argument("--write", action="store_true", help="rewrite the committed files")
    args = parser.parse_args(argv)
    if args.write:
        PUBLISHED_DIR.mkdir(exist_ok=True)
        for kind in MODELS:
            for fmt in _SUFFIX:
                path_of(kind, fmt).write_text(generate(kind, fmt), encoding="utf-8")
                print(path_of(kind, fmt))
        return 0
    out_of_date = stale()
    for path in out_of_date:
        print(f"{path} differs from the models; run python -m schemas.published --write")
    return 1 if out_of_date else 0


if __name__ == "__main__":
    sys.exit(main())
