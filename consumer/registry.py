"""The Schema Registry client, and the one rule that tells a bad record from a registry outage.

confluent-kafka's :class:`~confluent_kafka.schema_registry.SchemaRegistryClient` (httpx)
resolves writer schemas by id and caches them; its own per-request retries are cut to one
quick retry (:data:`CLIENT_RETRIES`) so that an outage reaches the worker at once, which then
retries the whole micro-batch with back-off (:mod:`consumer.worker`) while the main thread
keeps polling with the partitions paused.

**The rule** (:func:`classify_failure`), for whatever a deserializer raises:

* the registry answered **404 with error code 40401, 40402 or 40403** (subject, version or
  schema not found): the record names a schema the registry does not have —
  ``unknown_schema_id``, dead-lettered;
* the registry could not be asked or did not answer properly — a transport error
  (connection refused or reset, DNS, TLS, timeout; httpx2's or httpx's ``TransportError``,
  whichever the client uses), any 5xx, 408, 429, 401/403 (credentials:
  the service's problem, not the record's), or any other status or a body that is not the
  registry's JSON (a proxy's error page): a :class:`~consumer.isolation.DependencyUnavailableError`,
  retried, never dead-lettered;
* anything else (the payload does not match its writer schema, fails JSON Schema
  validation, the id names a schema of another type): ``undecodable_payload``, dead-lettered.

A misconfigured URL would make every lookup fail; the start-up check
(:func:`check_reachable`) refuses it before any record is read.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from consumer.clients import StartupError
from consumer.format_settings import SubjectNameStrategy, WireFormatSettings
from consumer.isolation import DependencyUnavailableError, InvalidRecordError, describe_exception
from schemas import ErrorCode

#: Label of the registry in ``DependencyUnavailableError`` and the metrics.
SCHEMA_REGISTRY = "schema_registry"
#: The client's own retries of one request (its default is 3 with up to 20 s waits).
CLIENT_RETRIES = 1
#: The client's wait before that retry (ms).
CLIENT_RETRY_WAIT_MS = 100
#: Registry error codes meaning "no such subject / version / schema" (Confluent's REST API).
NOT_FOUND_CODES = frozenset({40401, 40402, 40403})


class RegistryStartupError(StartupError):
    """The registry cannot be used (unreachable, credentials refused, schema refused)."""


def client_config(settings: WireFormatSettings) -> dict[str, Any]:
    """The :class:`SchemaRegistryClient` configuration of ``settings`` (holds the secret).

    Raises:
        ValueError: no registry URL is set.
    """
    if settings.schema_registry_url is None:
        raise ValueError("schema_registry_url is not set")
    config: dict[str, Any] = {
        "url": settings.schema_registry_url,
        "timeout": settings.schema_registry_timeout_s,
        "max.retries": CLIENT_RETRIES,
        "retries.wait.ms": CLIENT_RETRY_WAIT_MS,
        "retries.max.wait.ms": CLIENT_RETRY_WAIT_MS,
    }
    auth = settings.schema_registry_auth
    if auth is not None:
        config["basic.auth.user.info"] = auth.get_secret_value()
    for option, path in (
        ("ssl.ca.location", settings.schema_registry_ssl_ca_location),
        ("ssl.certificate.location", settings.schema_registry_ssl_certificate_location),
        ("ssl.key.location", settings.schema_registry_ssl_key_location),
    ):
        if path is not None:
            config[option] = str(path)
    return config


def registry_client(settings: WireFormatSettings) -> Any:
    """A ``SchemaRegistryClient`` for ``settings`` (no request is made yet).

    Raises:
        RegistryStartupError: the client refuses its configuration (e.g. an unreadable
            certificate).
    """
    from confluent_kafka.schema_registry import SchemaRegistryClient

    try:
        return SchemaRegistryClient(client_config(settings))
    except Exception as exc:
        raise RegistryStartupError(
            f"cannot create the Schema Registry client: {describe_exception(exc)}"
        ) from None


def reachable_client(settings: WireFormatSettings) -> Any:
    """A ``SchemaRegistryClient`` for ``settings`` that has answered once (start-up check).

    Raises:
        RegistryStartupError: see :func:`registry_client` and :func:`check_reachable`.
    """
    client = registry_client(settings)
    check_reachable(client, settings.schema_registry_url or "")
    return client


def check_reachable(client: Any, url: str) -> None:
    """Ask the registry for its subjects once; refuse to start if it does not answer.

    Raises:
        RegistryStartupError: unreachable, credentials refused, or not a registry at ``url``
            (the message says which and names the URL, never the credentials).
    """
    try:
        client.get_subjects()
    except Exception as exc:
        raise RegistryStartupError(f"Schema Registry at {url}: {describe_failure(exc)}") from None


def describe_failure(exc: BaseException) -> str:
    """What a registry call's exception means, for an operator (no credentials)."""
    status = getattr(exc, "http_status_code", None)
    if status in (401, 403):
        return (
            f"credentials refused (HTTP {status}); check schema_registry_basic_auth_user_info "
            "or schema_registry_basic_auth_file"
        )
    if status == 404:
        return "HTTP 404: is the URL the registry's Confluent API (Apicurio: /apis/ccompat/v7)?"
    if status is not None:
        return f"HTTP {status}: {getattr(exc, 'error_message', exc)}"
    return f"unreachable ({describe_exception(exc)})"


def classify_failure(exc: Exception) -> InvalidRecordError | DependencyUnavailableError:
    """The rule of the module docstring: a bad record, or the registry unavailable."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    if isinstance(exc, SchemaRegistryError):
        status, code = exc.http_status_code, exc.error_code
        if status == 404 and code in NOT_FOUND_CODES:
            return InvalidRecordError(
                ErrorCode.UNKNOWN_SCHEMA_ID,
                f"the Schema Registry has no such schema (HTTP 404, error {code}: "
                f"{exc.error_message})",
            )
        return DependencyUnavailableError(SCHEMA_REGISTRY, describe_failure(exc))
    if _is_transport_error(exc):
        return DependencyUnavailableError(SCHEMA_REGISTRY, describe_failure(exc))
    return InvalidRecordError(
        ErrorCode.UNDECODABLE_PAYLOAD,
        f"the payload does not decode with its writer schema: {describe_exception(exc)}",
    )


@functools.cache
def _transport_errors() -> tuple[type[BaseException], ...]:
    """``TransportError`` of httpx2 and httpx: confluent-kafka uses httpx2 when installed."""
    found = []
    for name in ("httpx2", "httpx"):
        try:
            found.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def _is_transport_error(exc: BaseException) -> bool:
    return isinstance(exc, _transport_errors())


def subject_name_strategy(name: SubjectNameStrategy) -> Callable[[Any, str | None], str | None]:
    """confluent-kafka's subject-name strategy function called ``name``."""
    from confluent_kafka.schema_registry import (
        record_subject_name_strategy,
        topic_record_subject_name_strategy,
        topic_subject_name_strategy,
    )

    strategies: dict[str, Callable[[Any, str | None], str | None]] = {
        "topic": topic_subject_name_strategy,
        "record": record_subject_name_strategy,
        "topic-record": topic_record_subject_name_strategy,
    }
    return strategies[name]
