"""Rules about the KEDA objects: what they scale, how far, and what the Kafka trigger says.

- ``autoscaling``: the ScaledObject scales the consumer StatefulSet (which leaves
  ``replicas`` to it), never to zero, to at most the input topic's partitions (annotation
  ``input-topic-partitions``, equal to ``CLASSIFIER_TOPIC_PARTITIONS``), with
  ``lagThreshold`` = throughput x latency budget (annotations; the throughput at most the
  measured :data:`MEASURED_REPLICA_THROUGHPUT`);
- ``kafka-trigger``: the Kafka trigger uses only parameters the pinned scaler declares (the
  ``keda:"..."`` struct tags of its Go source, :func:`scaler_parameters`), with valid enums,
  integers and booleans; its ``...FromEnv`` names exist in the consumer's environment; it
  reads the consumer's brokers, group and topic and agrees with its offset reset, SASL
  mechanism and TLS; its TriggerAuthentication passes only credentials the scaler takes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deploy.k8s.app_rules import consumer_settings
from deploy.k8s.manifests import Container, Manifests, Obj, dig, ident
from deploy.k8s.rules import Rule

#: docs/performance.md: end to end through Kafka, one process: 6,071 (short) / 2,891 (long)
#: msgs/s; the worse one is what a replica is assumed to drain.
MEASURED_REPLICA_THROUGHPUT = 2891

PARTITIONS_ANNOTATION = "stream-text-classifier/input-topic-partitions"
THROUGHPUT_ANNOTATION = "stream-text-classifier/replica-throughput-msgs-per-s"
BUDGET_ANNOTATION = "stream-text-classifier/latency-budget-s"


@dataclass(frozen=True)
class ScalerParameter:
    """One parameter of a KEDA scaler, from its ``keda:"..."`` struct tag.

    Attributes:
        name: The parameter's name.
        go_type: Its Go type (``int64``, ``bool``, ``string``, ``[]string``...).
        orders: Where KEDA looks it up: ``triggerMetadata``, ``authParams``, ``resolvedEnv``.
        required: Neither optional nor defaulted.
        enum: Its allowed values (empty: any).
    """

    name: str
    go_type: str
    orders: frozenset[str]
    required: bool
    enum: tuple[str, ...]


_TAG = re.compile(r"^\s*\w+\s+(?P<type>[\w\[\].*]+)\s+`[^`]*keda:\"(?P<tag>[^\"]+)\"", re.MULTILINE)


def scaler_parameters(source: str) -> dict[str, ScalerParameter]:
    """The parameters a KEDA scaler's Go source declares in its struct tags."""
    found = {}
    for match in _TAG.finditer(source):
        options: dict[str, str] = {}
        for part in match.group("tag").split(","):
            key, _, value = part.strip().partition("=")
            options[key] = value
        if "name" not in options:
            continue
        found[options["name"]] = ScalerParameter(
            name=options["name"],
            go_type=match.group("type"),
            orders=frozenset(options.get("order", "triggerMetadata").split(";")),
            required="optional" not in options and "default" not in options,
            enum=tuple(v for v in options.get("enum", "").split(";") if v),
        )
    return found


_GO_BOOLEANS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}
#: The consumer's SASL mechanism (librdkafka) → KEDA's ``sasl`` value.
_SASL = {
    None: "none",
    "PLAIN": "plaintext",
    "SCRAM-SHA-256": "scram_sha256",
    "SCRAM-SHA-512": "scram_sha512",
}


def _target(m: Manifests, scaled: Obj) -> tuple[Obj | None, Container | None]:
    ref = dig(scaled, "spec", "scaleTargetRef") or {}
    target = m.get(str(ref.get("kind", "Deployment")), str(ref.get("name")))
    wanted = ref.get("envSourceContainerName")
    for c in m.running("consumer"):
        if c.workload is target and (wanted is None or c.spec.get("name") == wanted):
            return target, c
    return target, None


def autoscaling(m: Manifests) -> list[str]:
    """Scale the consumer StatefulSet, 1..partitions, lagThreshold = throughput x budget."""
    errors = []
    for scaled in m.of_kind("ScaledObject"):
        where = ident(scaled)
        target, consumer = _target(m, scaled)
        if target is None or consumer is None or target.get("kind") != "StatefulSet":
            errors.append(f"{where}: must scale the consumer StatefulSet (envSourceContainerName)")
            continue
        if "replicas" in target.get("spec", {}):
            errors.append(
                f"{ident(target)}: sets replicas, which KEDA owns (each apply resets them)"
            )
        spec, notes = scaled.get("spec", {}), dig(scaled, "metadata", "annotations") or {}
        if spec.get("minReplicaCount", 0) < 1:
            errors.append(f"{where}: minReplicaCount must be >= 1 (a cold start takes ~1 min)")
        try:
            partitions = int(notes[PARTITIONS_ANNOTATION])
            throughput, budget = (
                float(notes[THROUGHPUT_ANNOTATION]),
                float(notes[BUDGET_ANNOTATION]),
            )
        except (KeyError, ValueError):
            errors.append(
                f"{where}: needs numeric annotations {PARTITIONS_ANNOTATION}, "
                f"{THROUGHPUT_ANNOTATION} and {BUDGET_ANNOTATION}"
            )
            continue
        if spec.get("maxReplicaCount", 100) > partitions:
            errors.append(
                f"{where}: maxReplicaCount {spec.get('maxReplicaCount', 100)} exceeds the "
                f"input topic's {partitions} partitions (idle, never-ready members)"
            )
        current = consumer_settings(m, consumer)
        if current is not None and current.topic_partitions != partitions:
            errors.append(
                f"{where}: {partitions} partitions assumed, CLASSIFIER_TOPIC_PARTITIONS "
                f"is {current.topic_partitions}"
            )
        if throughput > MEASURED_REPLICA_THROUGHPUT:
            errors.append(
                f"{where}: assumes {throughput:g} msgs/s per replica, more than the "
                f"measured {MEASURED_REPLICA_THROUGHPUT}"
            )
        for trigger in spec.get("triggers", []):
            lag = dig(trigger, "metadata", "lagThreshold")
            if trigger.get("type") == "kafka" and lag != str(round(throughput * budget)):
                errors.append(
                    f"{where}: lagThreshold {lag} != {throughput:g} msgs/s x {budget:g} s"
                )
    return errors


def _trigger_errors(
    m: Manifests,
    where: str,
    trigger: Obj,
    consumer: Container,
    params: Mapping[str, ScalerParameter],
) -> list[str]:
    errors = []
    metadata: dict[str, Any] = trigger.get("metadata", {})
    env = m.literal_env(consumer)
    resolved: dict[str, str] = {}
    for key, value in metadata.items():
        name = key.removesuffix("FromEnv")
        param = params.get(name)
        from_env = key != name
        if param is None or ("resolvedEnv" if from_env else "triggerMetadata") not in param.orders:
            errors.append(f"{where}: the Kafka scaler has no trigger parameter {key!r}")
            continue
        if from_env and value not in env:
            errors.append(f"{where}: {key} names {value!r}, not in the consumer's environment")
            continue
        text = resolved[name] = env[value] if from_env else str(value)
        if param.enum and text not in param.enum:
            errors.append(f"{where}: {name} {text!r} is not one of {list(param.enum)}")
        if param.go_type in ("int", "int32", "int64") and not re.fullmatch(r"-?\d+", text):
            errors.append(f"{where}: {name} {text!r} is not an integer")
        if param.go_type == "bool" and text not in _GO_BOOLEANS:
            errors.append(f"{where}: {name} {text!r} is not a boolean")
    for param in params.values():
        if param.required and "triggerMetadata" in param.orders and param.name not in resolved:
            errors.append(f"{where}: the Kafka scaler needs {param.name} (or {param.name}FromEnv)")
    current = consumer_settings(m, consumer)
    if current is not None:
        expected = {
            "bootstrapServers": current.bootstrap_servers,
            "consumerGroup": current.group_id,
            "topic": current.input_topic,
            "offsetResetPolicy": current.auto_offset_reset,
            "sasl": _SASL.get(getattr(current, "kafka_sasl_mechanism", None), "?"),
            "tls": "enable"
            if getattr(current, "kafka_security_protocol", None) in ("SSL", "SASL_SSL")
            else "disable",
        }
        defaults = {"offsetResetPolicy": "latest", "sasl": "none", "tls": "disable"}
        for name, value in expected.items():
            actual = resolved.get(name, defaults.get(name))
            if actual != value:
                errors.append(f"{where}: {name} is {actual!r}, the consumer's setting is {value!r}")
    return errors


def kafka_trigger(m: Manifests) -> list[str]:
    """The Kafka trigger's parameters exist, parse, and match the consumer's settings."""
    params = m.kafka_scaler
    if params is None:
        return ["the pinned KEDA Kafka scaler's parameters are unavailable"]
    errors = []
    for scaled in m.of_kind("ScaledObject"):
        _, consumer = _target(m, scaled)
        for index, trigger in enumerate(dig(scaled, "spec", "triggers") or []):
            where = f"{ident(scaled)}: triggers[{index}]"
            if trigger.get("type") != "kafka" or consumer is None:
                continue
            errors += _trigger_errors(m, where, trigger, consumer, params)
            auth_name = dig(trigger, "authenticationRef", "name")
            auth = m.get("TriggerAuthentication", auth_name) if auth_name else None
            if auth_name and auth is None:
                errors.append(f"{where}: TriggerAuthentication {auth_name!r} does not exist")
            given = {r.get("parameter") for r in dig(auth, "spec", "secretTargetRef") or []}
            for parameter in sorted(str(p) for p in given):
                if "authParams" not in getattr(params.get(parameter), "orders", ()):
                    errors.append(f"{where}: the Kafka scaler takes no credential {parameter!r}")
            sasl = dig(trigger, "metadata", "sasl")
            if sasl not in (None, "none") and not {"username", "password"} <= given:
                errors.append(f"{where}: sasl {sasl} needs username and password credentials")
    return errors


#: The rules of this module, by the name error lines carry.
KEDA_RULES: dict[str, Rule] = {
    "autoscaling": autoscaling,
    "kafka-trigger": kafka_trigger,
}
