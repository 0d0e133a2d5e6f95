"""Rendered manifests as data: objects by kind and name, pod templates, containers, environment.

The rules (:mod:`deploy.k8s.rules`, :mod:`deploy.k8s.app_rules`) read the rendered objects
through these helpers only, so each rule stays a few lines about *what* it checks.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deploy.k8s.keda_rules import ScalerParameter

Obj = dict[str, Any]

#: Kinds whose objects carry a pod template, and where it is.
_TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}
_DECIMAL.update({"T": 1e12, "P": 1e15, "E": 1e18})


def quantity(value: str | float) -> float:
    """A resource quantity (``500m``, ``1Gi``, ``2``, ``1e3``) as a plain number.

    Raises:
        ValueError: not a quantity.
    """
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(
        r"([+-]?(?:\d+(?:\.\d*)?|\.\d+))([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE]?)", value
    )
    if match is None:
        raise ValueError(f"{value!r} is not a resource quantity")
    number, suffix = float(match.group(1)), match.group(2)
    if suffix[:1] in ("e", "E"):
        return number * 10.0 ** int(suffix[1:])
    return number * float(_BINARY.get(suffix) or _DECIMAL[suffix])


def dig(obj: Any, *path: str | int) -> Any:
    """``obj[path[0]][path[1]]...``, or ``None`` where a step is missing."""
    for step in path:
        if isinstance(step, int):
            obj = obj[step] if isinstance(obj, list) and -len(obj) <= step < len(obj) else None
        else:
            obj = obj.get(step) if isinstance(obj, dict) else None
        if obj is None:
            return None
    return obj


def ident(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` of an object, for messages."""
    return f"{obj.get('kind')}/{dig(obj, 'metadata', 'name')}"


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Whether a label selector (``matchLabels`` form, or a Service's plain map) matches."""
    if not selector:
        return False
    wanted = selector.get("matchLabels", selector) if "matchExpressions" not in selector else None
    if wanted is None:  # matchExpressions: not used by these manifests, refuse to guess
        return False
    labels = labels or {}
    return all(labels.get(key) == value for key, value in wanted.items())


@dataclass(frozen=True)
class EnvValue:
    """Where one environment variable of a container comes from.

    Attributes:
        source: ``value`` (a literal, or a ConfigMap's data through envFrom/configMapKeyRef),
            ``field`` (downward API), ``secret`` (secretKeyRef) or ``resource``.
        value: The literal, the field path, or the Secret's name.
        key: The Secret's key (``secret`` only).
    """

    source: str
    value: str
    key: str | None = None


@dataclass(frozen=True)
class Container:
    """A container in its workload: the object, its pod spec and the container itself."""

    workload: Obj
    pod: Obj
    spec: Obj
    init: bool

    @property
    def name(self) -> str:
        """``Kind/name:container`` for messages."""
        return f"{ident(self.workload)}:{self.spec.get('name')}"

    @property
    def command(self) -> list[str]:
        """The command followed by the arguments."""
        return [*self.spec.get("command", []), *self.spec.get("args", [])]

    def runs(self, module: str) -> bool:
        """Whether it runs ``python -m <module>``."""
        command = self.command
        return len(command) >= 3 and command[1:3] == ["-m", module]

    def mounts(self) -> Iterator[tuple[Obj, Obj]]:
        """Each volume mount with the pod volume it mounts."""
        volumes = {v.get("name"): v for v in self.pod.get("volumes", [])}
        for mount in self.spec.get("volumeMounts", []):
            yield mount, volumes.get(mount.get("name"), {})


class Manifests:
    """The objects of one rendered overlay, plus the example Secrets the overlay expects."""

    def __init__(
        self,
        objects: list[Obj],
        secrets: list[Obj] | None = None,
        kafka_scaler: Mapping[str, ScalerParameter] | None = None,
    ) -> None:
        """Args: the rendered objects, the example Secrets, the Kafka scaler's parameters."""
        self.objects = objects
        self.secrets = secrets or []
        self.kafka_scaler = kafka_scaler

    def of_kind(self, kind: str) -> list[Obj]:
        """Every object of ``kind``."""
        return [o for o in self.objects if o.get("kind") == kind]

    def get(self, kind: str, name: str) -> Obj | None:
        """The object of ``kind`` named ``name``, if any."""
        return next((o for o in self.of_kind(kind) if dig(o, "metadata", "name") == name), None)

    def secret_data(self, name: str) -> dict[str, str] | None:
        """An example Secret's keys and (decoded) values, or ``None`` if there is none."""
        secret = next((s for s in self.secrets if dig(s, "metadata", "name") == name), None)
        if secret is None:
            return None
        data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
        return data | dict(secret.get("stringData", {}))

    def workloads(self) -> Iterator[tuple[Obj, Obj]]:
        """Each object with a pod template, with that template."""
        for obj in self.objects:
            path = _TEMPLATE_PATHS.get(str(obj.get("kind")))
            template = dig(obj, *path) if path else None
            if isinstance(template, dict):
                yield obj, template

    def containers(self, *, init: bool = True) -> Iterator[Container]:
        """Every container (and init container, unless ``init=False``) of every workload."""
        for obj, template in self.workloads():
            pod = template.get("spec", {})
            kinds = ("initContainers", "containers") if init else ("containers",)
            for kind in kinds:
                for spec in pod.get(kind, []):
                    yield Container(obj, pod, spec, kind == "initContainers")

    def running(self, module: str) -> list[Container]:
        """The containers that run ``python -m <module>``."""
        return [c for c in self.containers(init=False) if c.runs(module)]

    def env(self, container: Container) -> dict[str, EnvValue]:
        """A container's environment as Kubernetes builds it: envFrom first, env wins."""
        result: dict[str, EnvValue] = {}
        for source in container.spec.get("envFrom", []):
            name = dig(source, "configMapRef", "name")
            config = self.get("ConfigMap", name) if name else None
            prefix = source.get("prefix", "")
            for key, value in (config or {}).get("data", {}).items():
                result[prefix + key] = EnvValue("value", str(value))
        for var in container.spec.get("env", []):
            ref = var.get("valueFrom", {})
            if "value" in var:
                result[var["name"]] = EnvValue("value", str(var["value"]))
            elif "fieldRef" in ref:
                result[var["name"]] = EnvValue("field", ref["fieldRef"]["fieldPath"])
            elif "secretKeyRef" in ref:
                secret = ref["secretKeyRef"]
                result[var["name"]] = EnvValue("secret", secret["name"], secret["key"])
            elif "configMapKeyRef" in ref:
                config = self.get("ConfigMap", ref["configMapKeyRef"]["name"]) or {}
                value = dig(config, "data", ref["configMapKeyRef"]["key"])
                result[var["name"]] = EnvValue("value", "" if value is None else str(value))
            else:
                result[var["name"]] = EnvValue("resource", str(ref))
        return result

    def literal_env(self, container: Container) -> dict[str, str]:
        """The container's variables that have a literal value (ConfigMaps included)."""
        return {k: v.value for k, v in self.env(container).items() if v.source == "value"}
