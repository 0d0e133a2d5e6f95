"""Settings of the wire formats and the Schema Registry (part of ``consumer.settings.Settings``).

``json`` (the default) needs nothing else. ``avro``, ``json-schema`` and ``protobuf`` input, and
``avro`` / ``json-schema`` output, are the Confluent wire format (magic byte 0, 4-byte schema
id, payload) and need ``schema_registry_url``. Credentials are secrets: read from the
environment or a file, never logged, and refused inside the URL.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings

from consumer.field_map import FieldMap

InputFormat = Literal["json", "avro", "json-schema", "protobuf"]
OutputFormat = Literal["json", "avro", "json-schema"]
SubjectNameStrategy = Literal["topic", "record", "topic-record"]
Compatibility = Literal[
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
    "NONE",
    "KEEP",
]


def _default_registry_url() -> str | None:
    return os.environ.get("SCHEMA_REGISTRY_URL") or None


class WireFormatSettings(BaseSettings):
    """Input/output formats and the Schema Registry client (see the module docstring)."""

    input_format: InputFormat = Field(
        default="json",
        description="Format of the input topic's values: json (UTF-8 JSON, no registry), "
        "avro, json-schema or protobuf (Confluent Schema Registry wire format; the writer "
        "schema is fetched by the id in each value and cached).",
    )
    output_format: OutputFormat = Field(
        default="json",
        description="Format of predictions, review records and dead letters: json, or avro / "
        "json-schema with the project's published schemas (schemas/published/), registered "
        "at start-up.",
    )
    input_fields: dict[str, str] = Field(
        default_factory=dict,
        description="Where the input fields are in the producer's record, as JSON: input "
        'field → field path, dot-separated for nested records, e.g. \'{"text": "body", "id": '
        '"article_id", "title": "meta.headline"}\'. Unnamed fields keep their own name.',
    )
    input_protobuf_message: str | None = Field(
        default=None,
        description="With --input-format protobuf: the producer's generated message class, "
        "'module:Class' (the module must be importable by the service, e.g. on PYTHONPATH).",
    )
    schema_registry_url: str | None = Field(
        default_factory=_default_registry_url,
        description="Schema Registry URL(s), comma-separated (Confluent API; Apicurio: "
        ".../apis/ccompat/v7). Falls back to $SCHEMA_REGISTRY_URL. Needed by every format "
        "but json.",
    )
    schema_registry_basic_auth_user_info: SecretStr | None = Field(
        default=None,
        description="HTTP basic auth 'user:password' for the registry, kept secret (never "
        "logged). Prefer the environment variable or the file to the flag.",
    )
    schema_registry_basic_auth_file: Path | None = Field(
        default=None,
        description="File holding the registry's 'user:password' (e.g. a mounted Kubernetes "
        "secret); read once at start-up, one trailing newline ignored.",
    )
    schema_registry_ssl_ca_location: Path | None = Field(
        default=None,
        description="CA certificate(s) verifying the registry's TLS certificate (PEM file or "
        "directory). Unset: the system's CA store.",
    )
    schema_registry_ssl_certificate_location: Path | None = Field(
        default=None, description="Client certificate (PEM) for mutual TLS with the registry."
    )
    schema_registry_ssl_key_location: Path | None = Field(
        default=None, description="Private key (PEM) of the client certificate."
    )
    schema_registry_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Timeout of one registry request (s)."
    )
    schema_registry_retry_max_s: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="While the registry is unreachable, the micro-batch is retried with "
        "back-off doubling from 0.5 s up to this (s); nothing is dead-lettered for it.",
    )
    schema_registry_subject_name_strategy: SubjectNameStrategy = Field(
        default="topic",
        description="Subject of the output schemas: topic ('<topic>-value', Confluent's "
        "default), record (the record's full name) or topic-record ('<topic>-<record>').",
    )
    schema_registry_compatibility: Compatibility = Field(
        default="BACKWARD",
        description="Compatibility level set on the output subjects at start-up (BACKWARD: "
        "a new schema must read data written with the previous one; Confluent's default). "
        "KEEP leaves the subjects' level as it is (Apicurio's own default is NONE).",
    )
    schema_registry_auto_register: bool = Field(
        default=True,
        description="Register the output schemas at start-up; --no-schema-registry-auto-"
        "register: they must already be registered (looked up, start-up fails otherwise).",
    )
    _registry_auth_from_file: SecretStr | None = PrivateAttr(default=None)

    @field_validator("input_fields")
    @classmethod
    def _known_input_fields(cls, value: dict[str, str]) -> dict[str, str]:
        FieldMap(value)  # raises ValueError naming the bad field
        return value

    @field_validator("schema_registry_url")
    @classmethod
    def _url_without_credentials(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        for url in value.split(","):
            parts = urlsplit(url.strip())
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError(f"{url.strip()!r} is not an http(s) URL")
            if parts.username is not None or parts.password is not None:
                raise ValueError(
                    "credentials in the URL would be logged: use "
                    "CLASSIFIER_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO or "
                    "--schema-registry-basic-auth-file"
                )
        return value.strip()

    @model_validator(mode="after")
    def _registry_fits_formats(self) -> Self:
        """Check the formats have what they need; read the credentials file (once, here)."""
        if self.uses_registry and self.schema_registry_url is None:
            raise ValueError(
                f"input format {self.input_format!r} / output format {self.output_format!r} "
                "need schema_registry_url (or $SCHEMA_REGISTRY_URL)"
            )
        if (self.input_format == "protobuf") != (self.input_protobuf_message is not None):
            raise ValueError(
                "input_protobuf_message ('module:Class') goes with input_format protobuf, "
                "and only with it"
            )
        if self.input_protobuf_message is not None and ":" not in self.input_protobuf_message:
            raise ValueError("input_protobuf_message must be 'module:Class'")
        if (
            self.schema_registry_basic_auth_user_info is not None
            and self.schema_registry_basic_auth_file is not None
        ):
            raise ValueError(
                "give one of schema_registry_basic_auth_user_info and "
                "schema_registry_basic_auth_file"
            )
        for name in ("ca", "certificate", "key"):
            path = getattr(self, f"schema_registry_ssl_{name}_location")
            if path is not None and not path.exists():
                raise ValueError(f"schema_registry_ssl_{name}_location {str(path)!r} is missing")
        if (self.schema_registry_ssl_key_location is None) != (
            self.schema_registry_ssl_certificate_location is None
        ):
            raise ValueError(
                "schema_registry_ssl_certificate_location and schema_registry_ssl_key_location "
                "go together"
            )
        path = self.schema_registry_basic_auth_file
        if path is not None:
            try:
                text = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(
                    f"schema_registry_basic_auth_file: cannot read {str(path)!r} ({exc})"
                ) from None
            self._registry_auth_from_file = SecretStr(text)
        auth = self.schema_registry_auth
        if auth is not None and ":" not in auth.get_secret_value():
            raise ValueError("the registry's basic auth must be 'user:password'")
        return self

    @property
    def uses_registry(self) -> bool:
        """Whether any format needs the Schema Registry."""
        return self.input_format != "json" or self.output_format != "json"

    @property
    def schema_registry_auth(self) -> SecretStr | None:
        """The registry's ``user:password``: the setting, else the file's content."""
        return self.schema_registry_basic_auth_user_info or self._registry_auth_from_file

    @property
    def input_field_map(self) -> FieldMap:
        """``input_fields`` as a :class:`~consumer.field_map.FieldMap`.

        The typed formats (Avro, JSON Schema, Protobuf) may carry an integer ``id``.
        """
        return FieldMap(self.input_fields, coerce_integer_id=self.input_format != "json")
