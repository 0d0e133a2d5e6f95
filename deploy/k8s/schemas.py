"""The pinned schemas made strict: JSON Schemas per apiVersion and kind, and their CEL rules.

The documents come from :mod:`deploy.k8s.pins`. How they are made strict
(:func:`strict_schema`), as the API server's strict field validation
(``kubectl apply --validate=strict``) would judge an object:

- an object schema that lists ``properties`` gets ``additionalProperties: false`` (an unknown
  or misspelt field fails) unless it says ``x-kubernetes-preserve-unknown-fields: true``;
- ``type``, ``required``, ``enum``, ``pattern``, ``minimum``... are kept as they are;
- int-or-string (``format: int-or-string``, ``x-kubernetes-int-or-string: true``) is an
  integer or a string, nothing else;
- a resource ``Quantity`` is a number or a string in the API server's quantity syntax
  (``500m``, ``1Gi``, ``1e3``), so ``1GB`` fails as it would on apply;
- ``x-kubernetes-embedded-resource: true`` requires ``apiVersion`` and ``kind`` and checks
  ``metadata`` as an ObjectMeta;
- ``nullable: true`` admits ``null``;
- a CRD's top-level ``metadata`` is checked as the Kubernetes ObjectMeta; its CEL rules
  (``x-kubernetes-validations``) are collected and evaluated by their Python equivalents in
  :data:`CEL_RULES` (a rule without one fails loudly instead of being skipped).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from deploy.k8s.pins import MODULES, cache_root

OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"

#: The API server's quantity syntax (k8s.io/apimachinery resource.Quantity):
#: <signedNumber><suffix>, suffix binary (Ki..Ei), decimal (n u m "" k M G T P E) or an
#: exponent (e3, E-2).
_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
QUANTITY_PATTERN = rf"^{_NUMBER}(?:[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$"

#: Keys copied into the strict schemas unchanged (validation keywords). Everything else
#: (description, default, example, x-kubernetes-* list/patch hints) is dropped.
_KEPT = frozenset(
    {
        "type", "required", "enum", "const", "pattern", "minimum", "maximum",
        "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems",
        "maxItems", "uniqueItems", "minProperties", "maxProperties", "multipleOf", "format",
    }
)  # fmt: skip


@dataclass(frozen=True)
class CelRule:
    """A CRD's ``x-kubernetes-validations`` rule and where it applies.

    Attributes:
        path: Property names from the object's root to the node (``"[]"``: each list item).
        rule: The CEL expression, verbatim.
        message: The message the API server would give.
    """

    path: tuple[str, ...]
    rule: str
    message: str


def strict_schema(node: Any, path: tuple[str, ...] = (), cel: list[CelRule] | None = None) -> Any:
    """One OpenAPI v3 (or CRD structural) schema node as a strict JSON Schema 2020-12 node.

    Args:
        node: The schema node.
        path: Where it is, in property names from the object's root (for CEL rules).
        cel: Collects the node's and its children's CEL rules, if given.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            out[key] = value.replace("#/components/schemas/", "#/$defs/")
        elif key == "properties":
            out[key] = {name: strict_schema(sub, (*path, name), cel) for name, sub in value.items()}
        elif key == "items" and isinstance(value, dict):
            out[key] = strict_schema(value, (*path, "[]"), cel)
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = strict_schema(value, (*path, "{}"), cel)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [strict_schema(sub, path, cel) for sub in value]
        elif key == "not":
            out[key] = strict_schema(value, path, cel)
        elif key in _KEPT or key == "additionalProperties":
            out[key] = value
    if node.get("x-kubernetes-int-or-string") or node.get("format") == "int-or-string":
        for key in ("format", "oneOf", "anyOf"):
            out.pop(key, None)
        out["type"] = ["integer", "string"]
    if node.get("x-kubernetes-embedded-resource"):
        properties = out.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"$ref": f"#/$defs/{OBJECT_META}"})
        out["required"] = sorted({*out.get("required", []), "apiVersion", "kind"})
    if (
        "properties" in out
        and "additionalProperties" not in out
        and node.get("x-kubernetes-preserve-unknown-fields") is not True
    ):
        out["additionalProperties"] = False
    if node.get("nullable") is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    if cel is not None:
        for rule in node.get("x-kubernetes-validations", []):
            cel.append(CelRule(path, rule["rule"], rule.get("message", rule["rule"])))
    return out


def _max_replicas_rule(spec: Mapping[str, Any]) -> bool:
    minimum = spec.get("minReplicaCount")
    return minimum is None or minimum <= spec.get("maxReplicaCount", 100)


#: Python equivalents of the CRDs' CEL rules (pinned versions), by rule text. A CRD rule not
#: listed here makes validation fail, so a new pin cannot skip a rule silently.
CEL_RULES: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "!has(self.minReplicaCount) || self.minReplicaCount <= (has(self.maxReplicaCount) "
    "? self.maxReplicaCount : 100)": _max_replicas_rule,
}


def _nodes_at(value: Any, path: tuple[str, ...]) -> Iterator[Any]:
    """The instance nodes at a CEL rule's ``path`` (``[]``: every item, ``{}``: every value)."""
    if not path:
        yield value
        return
    head, rest = path[0], path[1:]
    if head == "[]" and isinstance(value, list):
        for item in value:
            yield from _nodes_at(item, rest)
    elif head == "{}" and isinstance(value, dict):
        for item in value.values():
            yield from _nodes_at(item, rest)
    elif isinstance(value, dict) and head in value:
        yield from _nodes_at(value[head], rest)


def _json_path(parts: Iterator[str | int] | Any) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".") or "(root)"


def _message(error: ValidationError) -> str:
    """The most specific error of ``error`` (inside anyOf/oneOf), with its path."""
    chosen = best_match([error, *error.context]) if error.context else error
    message = chosen.message
    if len(message) > 300:
        message = message[:297] + "..."
    return f"{_json_path(chosen.absolute_path)}: {message}"


@dataclass
class SchemaCatalog:
    """Strict schemas of every kind the pinned documents define, keyed by apiVersion and kind.

    Attributes:
        defs: Every definition (``$defs``): the Kubernetes components and one per CRD version.
        kinds: ``(apiVersion, kind)`` → the name of its definition in :attr:`defs`.
        cel: ``(apiVersion, kind)`` → its CRD's CEL rules.
        sources: ``(apiVersion, kind)`` → which pinned module defines it.
    """

    defs: dict[str, Any] = field(default_factory=dict)
    kinds: dict[tuple[str, str], str] = field(default_factory=dict)
    cel: dict[tuple[str, str], list[CelRule]] = field(default_factory=dict)
    sources: dict[tuple[str, str], str] = field(default_factory=dict)
    _validators: dict[tuple[str, str], Draft202012Validator] = field(default_factory=dict)

    def add_openapi(self, document: Mapping[str, Any], source: str) -> None:
        """Add the schemas of one Kubernetes OpenAPI v3 document (one group/version)."""
        for name, schema in document.get("components", {}).get("schemas", {}).items():
            if name in self.defs:
                continue
            self.defs[name] = strict_schema(schema)
            for gvk in schema.get("x-kubernetes-group-version-kind", []):
                api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
                self.kinds[(api_version, gvk["kind"])] = name
                self.sources[(api_version, gvk["kind"])] = source
        self.defs[QUANTITY] = {"type": ["string", "number"], "pattern": QUANTITY_PATTERN}

    def add_crd(self, crd: Mapping[str, Any], source: str) -> None:
        """Add every served version of a CustomResourceDefinition."""
        spec = crd["spec"]
        for version in spec["versions"]:
            if not version.get("served", True):
                continue
            api_version = f"{spec['group']}/{version['name']}"
            key = (api_version, spec["names"]["kind"])
            rules: list[CelRule] = []
            schema = strict_schema(version["schema"]["openAPIV3Schema"], (), rules)
            schema.setdefault("properties", {})["metadata"] = {"$ref": f"#/$defs/{OBJECT_META}"}
            name = f"{spec['group']}.{version['name']}.{key[1]}"  # no "/" (JSON pointers)
            self.defs[name] = schema
            self.kinds[key] = name
            self.cel[key] = rules
            self.sources[key] = source

    def validator(self, api_version: str, kind: str) -> Draft202012Validator | None:
        """The strict validator of one kind, or ``None`` when no pinned schema defines it."""
        key = (api_version, kind)
        if key not in self.kinds:
            return None
        if key not in self._validators:
            root = {
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$defs": self.defs,
                "allOf": [{"$ref": f"#/$defs/{self.kinds[key]}"}],
                "properties": {
                    "apiVersion": {"const": api_version},
                    "kind": {"const": kind},
                    "metadata": {"type": "object", "required": ["name"]},
                },
                "required": ["apiVersion", "kind", "metadata"],
            }
            self._validators[key] = Draft202012Validator(root)
        return self._validators[key]

    def validate(self, document: Mapping[str, Any]) -> list[str]:
        """Every schema error of one object, as ``path: message`` lines (none: valid)."""
        api_version, kind = document.get("apiVersion"), document.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return ["(root): apiVersion and kind must be strings"]
        validator = self.validator(api_version, kind)
        if validator is None:
            return [
                f"(root): no pinned schema defines {api_version} {kind} "
                "(pin its document in deploy/k8s/pins.py)"
            ]
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        lines = [_message(error) for error in errors]
        for rule in self.cel.get((api_version, kind), []):
            check = CEL_RULES.get(rule.rule)
            if check is None:
                lines.append(
                    f"{_json_path(rule.path)}: CEL rule {rule.rule!r} has no Python equivalent "
                    "in deploy/k8s/schemas.py CEL_RULES, so it cannot be checked offline"
                )
                continue
            for node in _nodes_at(document, rule.path):
                if isinstance(node, Mapping) and not check(node):
                    lines.append(f"{_json_path(rule.path)}: {rule.message} (CEL rule)")
        return lines


def load_catalog(root: Path | None = None) -> SchemaCatalog:
    """The strict schemas of every pinned document (call :func:`ensure_schemas` first)."""
    root = root or cache_root()
    catalog = SchemaCatalog()
    for module in MODULES:
        for relative in module.files:
            path = module.file(relative, root)
            if path.suffix == ".json":
                catalog.add_openapi(json.loads(path.read_text(encoding="utf-8")), module.name)
            elif path.suffix == ".yaml":
                catalog.add_crd(yaml.safe_load(path.read_text(encoding="utf-8")), module.name)
    return catalog
