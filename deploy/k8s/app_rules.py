"""Rules that tie the manifests to this application (docs/deploy.md, "Kubernetes").

- ``settings``: the consumer's and the API's environment is accepted by their real settings
  classes (``consumer.settings.Settings``, ``api.settings.ApiSettings``), every ``CLASSIFIER_*``
  name is one of their settings (or an engine variable of ``model.engine.env``), and every
  path setting lies on a volume the container mounts (secret files with the example
  Secrets' content, the model directory on the models claim); the trainer's arguments are
  accepted by ``training.cli.parse_settings``;
- ``identity``: the consumer is a StatefulSet; ``CLASSIFIER_GROUP_INSTANCE_ID`` (KIP-345) is
  its pod name; with exactly-once, so is ``CLASSIFIER_TRANSACTIONAL_ID``, and without it
  there is none;
- ``grace-period``: the consumer's terminationGracePeriodSeconds is above its
  ``shutdown_timeout_s`` plus :data:`SHUTDOWN_MARGIN_S`;
- ``health-endpoints``: liveness is ``/healthz`` and readiness ``/readyz`` on the port the
  consumer serves metrics on (``metrics_port``) and the API listens on (``port``, host
  0.0.0.0);
- ``measured-resources``: requests cover the measured needs (docs/performance.md) times the
  processes per pod;
- ``models-volume``: the models claim is ReadWriteMany; every consumer and API replica mounts
  it read-only and reads its model directory from it; the trainer mounts it writable and
  writes that same directory;
- ``images``: every image has a tag (not ``latest``) set by kustomize ``images:``; the three
  roles run three different images, each pod one image.

The KEDA rules are in :mod:`deploy.k8s.keda_rules`.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from api.settings import ApiSettings
from consumer.settings import Settings
from deploy.k8s.manifests import Container, EnvValue, Manifests, Obj, dig, quantity
from deploy.k8s.rules import Rule
from model.engine import env as engine_env
from schemas.errors import error_lines
from training.cli import parse_settings, settings_error

#: After shutdown_timeout_s the consumer still closes its consumer (leaving the group),
#: flushes its producer (1 s when a batch was abandoned) and exits: this long at most (s).
SHUTDOWN_MARGIN_S = 15.0
#: docs/performance.md: one consumer process, peak RSS 830 / 844 MiB (short / long stream).
MEASURED_PEAK_RSS_MIB = 844
#: docs/performance.md: ~1.1 of 2 cores busy at saturation (one process, GIL-bound).
MEASURED_BUSY_CORES = 1.1
#: /usr/bin/time -v python -m training.fit --dataset bbc: peak RSS 867 MiB.
MEASURED_TRAINER_RSS_MIB = 867

#: The image names the manifests use before kustomize ``images:`` replaces them.
IMAGE_PLACEHOLDERS = frozenset(
    {
        "stream-text-classifier-consumer",
        "stream-text-classifier-api",
        "stream-text-classifier-trainer",
    }
)
_ENGINE_VARIABLES = frozenset(
    {
        engine_env.INTRA_OP_ENV,
        engine_env.INTER_OP_ENV,
        engine_env.WORKERS_ENV,
        engine_env.WARMUP_ENV,
    }
)
_MIB = 2**20


# -- the settings each container really gets ---------------------------------------------------


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with every ``CLASSIFIER_*`` variable replaced by ``values``."""
    saved = dict(os.environ)
    try:
        for name in [n for n in os.environ if n.startswith("CLASSIFIER_")]:
            del os.environ[name]
        os.environ.update(values)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _simulated_environment(
    m: Manifests, c: Container, root: Path, bundle_variable: str
) -> dict[str, str]:
    """The container's environment, with every mounted path moved under ``root``.

    Secret volumes become files holding the example Secrets' values; the model directory
    (``bundle_variable``) is created when, and only when, it lies on a mounted volume.
    """
    mounts: dict[str, Path] = {}
    for mount, volume in c.mounts():
        local = root / str(mount["mountPath"]).lstrip("/")
        local.mkdir(parents=True, exist_ok=True)
        mounts[str(mount["mountPath"]).rstrip("/")] = local
        secret = volume.get("secret")
        if secret:
            data = m.secret_data(secret["secretName"]) or {}
            items = secret.get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                if item["key"] in data:
                    (local / item["path"]).write_text(data[item["key"]], encoding="utf-8")
    pod_name = f"{dig(c.workload, 'metadata', 'name')}-0"
    result = {}
    for name, value in m.env(c).items():
        if value.source == "field":
            text = pod_name if value.value == "metadata.name" else "field"
        elif value.source == "secret":
            text = (m.secret_data(value.value) or {}).get(value.key or "", "")
        else:
            text = value.value
        for mount_path in sorted(mounts, key=len, reverse=True):
            if text.startswith(mount_path + "/"):
                text = str(mounts[mount_path] / text[len(mount_path) + 1 :])
                if name == bundle_variable:
                    Path(text).mkdir(parents=True, exist_ok=True)
                break
        result[name] = text
    return result


@dataclass(frozen=True)
class _Service:
    """What a command's container must satisfy: its module, settings class and env prefix."""

    module: str
    settings: type[BaseSettings]
    prefix: str

    @property
    def bundle_variable(self) -> str:
        return f"{self.prefix}BUNDLE"


CONSUMER = _Service("consumer", Settings, "CLASSIFIER_")
API = _Service("api", ApiSettings, "CLASSIFIER_API_")


def effective_settings(m: Manifests, c: Container, service: _Service) -> BaseSettings | list[str]:
    """The container's settings as its command would read them, or the error lines."""
    with tempfile.TemporaryDirectory(prefix="k8s-settings-") as scratch:
        env = _simulated_environment(m, c, Path(scratch), service.bundle_variable)
        try:
            with _environment(env):
                return service.settings()
        except ValidationError as exc:
            return [f"{c.name}: {line}" for line in error_lines(exc, "settings")]


def _known_names(service: _Service) -> set[str]:
    return {service.prefix + name.upper() for name in service.settings.model_fields}


def settings(m: Manifests) -> list[str]:
    """The real settings classes accept each consumer's and API's environment."""
    errors: list[str] = []
    for service in (CONSUMER, API):
        known = _known_names(service) | _ENGINE_VARIABLES
        for c in m.running(service.module):
            for name in m.env(c):
                owned = name.startswith(service.prefix) or (
                    service is API and name.startswith("CLASSIFIER_")
                )
                if owned and name not in known:
                    errors.append(f"{c.name}: {name} is no setting of python -m {service.module}")
            result = effective_settings(m, c, service)
            if isinstance(result, list):
                errors += result
    for c in m.running("training.fit"):
        errors += _trainer_arguments(c)
    return errors


def _trainer_arguments(c: Container) -> list[str]:
    """The trainer's arguments as ``python -m training.fit`` parses them (its real CLI)."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            parse_settings(c.command[3:])
    except ValidationError as exc:
        return [f"{c.name}: {settings_error(exc)}"]
    except SystemExit:
        lines = stderr.getvalue().strip().splitlines()
        reason = lines[-1] if lines else "exit"
        return [f"{c.name}: python -m training.fit refuses its arguments ({reason})"]
    return []


def consumer_settings(m: Manifests, c: Container) -> Settings | None:
    """The consumer container's settings, or ``None`` when they are invalid (see ``settings``)."""
    result = effective_settings(m, c, CONSUMER)
    return result if isinstance(result, Settings) else None


# -- identity, shutdown, health ------------------------------------------------------------


def _from_pod_name(value: EnvValue | None) -> bool:
    return value is not None and value.source == "field" and value.value == "metadata.name"


def identity(m: Manifests) -> list[str]:
    """StatefulSet; group.instance.id (and transactional.id with exactly-once) = pod name."""
    errors = []
    for c in m.running("consumer"):
        if c.workload.get("kind") != "StatefulSet":
            errors.append(f"{c.name}: the consumer must be a StatefulSet (stable pod names)")
        env = m.env(c)
        if not _from_pod_name(env.get("CLASSIFIER_GROUP_INSTANCE_ID")):
            errors.append(f"{c.name}: CLASSIFIER_GROUP_INSTANCE_ID must be the pod name")
        current = consumer_settings(m, c)
        transactional = env.get("CLASSIFIER_TRANSACTIONAL_ID")
        if current is not None and current.exactly_once and not _from_pod_name(transactional):
            errors.append(
                f"{c.name}: with exactly-once, CLASSIFIER_TRANSACTIONAL_ID must be the pod name"
            )
        if current is not None and not current.exactly_once and transactional is not None:
            errors.append(f"{c.name}: CLASSIFIER_TRANSACTIONAL_ID is set without exactly-once")
    return errors


def grace_period(m: Manifests) -> list[str]:
    """The grace period exceeds ``shutdown_timeout_s`` + :data:`SHUTDOWN_MARGIN_S`."""
    errors = []
    for c in m.running("consumer"):
        current = consumer_settings(m, c)
        grace = c.pod.get("terminationGracePeriodSeconds", 30)
        if current is not None and grace <= current.shutdown_timeout_s + SHUTDOWN_MARGIN_S:
            errors.append(
                f"{c.name}: terminationGracePeriodSeconds {grace} must exceed shutdown_timeout_s "
                f"{current.shutdown_timeout_s:g} + {SHUTDOWN_MARGIN_S:g} s to close the clients"
            )
    return errors


def _probe_errors(c: Container, port_number: int) -> list[str]:
    names = {p.get("name"): p.get("containerPort") for p in c.spec.get("ports", [])}
    errors = []
    for kind, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        probe = dig(c.spec, kind, "httpGet") or {}
        port = probe.get("port")
        number = names.get(port) if isinstance(port, str) else port
        if probe.get("path") != path or number != port_number:
            errors.append(f"{c.name}: {kind} must be GET {path} on port {port_number}")
    return errors


def health_endpoints(m: Manifests) -> list[str]:
    """Liveness /healthz and readiness /readyz on the port the process really serves."""
    errors = []
    for c in m.running("consumer"):
        current = consumer_settings(m, c)
        if current is not None:
            errors += _probe_errors(c, current.metrics_port)
    for c in m.running("api"):
        result = effective_settings(m, c, API)
        if isinstance(result, ApiSettings):
            errors += _probe_errors(c, result.port)
            if result.host not in ("0.0.0.0", "::"):
                errors.append(f"{c.name}: the API binds {result.host}, unreachable from probes")
    return errors


def _requests(c: Container) -> tuple[float, float]:
    declared = dig(c.spec, "resources", "requests") or {}
    return quantity(declared.get("cpu", 0)), quantity(declared.get("memory", 0))


def measured_resources(m: Manifests) -> list[str]:
    """Requests cover the measured CPU and memory of each process of the pod."""
    errors = []
    for module in ("consumer", "api"):
        for c in m.running(module):
            current = consumer_settings(m, c) if module == "consumer" else None
            processes = current.process_count if current is not None else 1
            cpu, memory = _requests(c)
            if cpu < processes * MEASURED_BUSY_CORES:
                errors.append(f"{c.name}: cpu request below {processes} x {MEASURED_BUSY_CORES}")
            if memory < processes * MEASURED_PEAK_RSS_MIB * _MIB:
                errors.append(
                    f"{c.name}: memory request below {processes} x {MEASURED_PEAK_RSS_MIB} MiB"
                )
    for c in m.running("training.fit"):
        if _requests(c)[1] < MEASURED_TRAINER_RSS_MIB * _MIB:
            errors.append(f"{c.name}: memory request below {MEASURED_TRAINER_RSS_MIB} MiB")
    return errors


# -- the models volume, images ----------------------------------------------------------------


def _model_mount(c: Container, path: str) -> tuple[Obj, Obj] | None:
    """The mount (and volume) that holds ``path``, the longest mount path first."""
    found = [
        (mount, volume)
        for mount, volume in c.mounts()
        if path.startswith(str(mount.get("mountPath")).rstrip("/") + "/")
    ]
    return max(found, key=lambda mv: len(str(mv[0].get("mountPath"))), default=None)


def models_volume(m: Manifests) -> list[str]:
    """RWX claim; replicas mount it read-only; the trainer writes the directory they read."""
    errors: list[str] = []
    claims: set[str] = set()
    bundles: set[str] = set()
    for service in (CONSUMER, API):
        for c in m.running(service.module):
            bundle = m.literal_env(c).get(service.bundle_variable, "")
            bundles.add(bundle)
            found = _model_mount(c, bundle)
            claim = dig(found[1], "persistentVolumeClaim", "claimName") if found else None
            if found is None or claim is None:
                errors.append(f"{c.name}: its model directory {bundle!r} is on no claim it mounts")
                continue
            claims.add(claim)
            if not found[0].get("readOnly") or not dig(
                found[1], "persistentVolumeClaim", "readOnly"
            ):
                errors.append(f"{c.name}: must mount the models claim read-only")
    for c in m.running("training.fit"):
        command = c.command
        output = command[command.index("--output") + 1] if "--output" in command[:-1] else ""
        found = _model_mount(c, output)
        claim = dig(found[1], "persistentVolumeClaim", "claimName") if found else None
        if claim is None or found is None or found[0].get("readOnly"):
            errors.append(f"{c.name}: --output {output!r} is on no claim it mounts writable")
        else:
            claims.add(claim)
        bundles.add(output)
    if len(bundles) > 1:
        errors.append(
            f"the trainer, consumers and API use different model directories {sorted(bundles)}"
        )
    for claim in claims:
        modes = dig(m.get("PersistentVolumeClaim", claim), "spec", "accessModes") or []
        if "ReadWriteMany" not in modes:
            errors.append(
                f"PersistentVolumeClaim/{claim}: must be ReadWriteMany (replicas on many nodes)"
            )
    if len(claims) > 1:
        errors.append(f"the trainer, consumers and API mount different claims {sorted(claims)}")
    return errors


def images(m: Manifests) -> list[str]:
    """Tagged images set by kustomize; one image per role, three roles, three images."""
    errors = []
    by_role: dict[str, set[str]] = {}
    for module in ("consumer", "api", "training.fit"):
        for main in m.running(module):
            for c in m.containers():
                if c.workload is main.workload:
                    by_role.setdefault(module, set()).add(str(c.spec.get("image")))
    for c in m.containers():
        image = str(c.spec.get("image"))
        name, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "")
        if name in IMAGE_PLACEHOLDERS or image in IMAGE_PLACEHOLDERS:
            errors.append(f"{c.name}: image {image!r} was not set by kustomize images:")
        elif "@sha256:" not in image and tag in ("", "latest"):
            errors.append(f"{c.name}: image {image!r} needs a tag other than latest (or a digest)")
    for role, names in by_role.items():
        if len(names) != 1:
            errors.append(f"the {role} pods run several images {sorted(names)}")
    flat = [next(iter(names)) for names in by_role.values() if len(names) == 1]
    if len(set(flat)) != len(flat):
        errors.append(f"two roles share an image {sorted(flat)}: each needs its own EXTRAS")
    return errors


#: The rules of this module, by the name error lines carry.
APP_RULES: dict[str, Rule] = {
    "settings": settings,
    "identity": identity,
    "grace-period": grace_period,
    "health-endpoints": health_endpoints,
    "measured-resources": measured_resources,
    "models-volume": models_volume,
    "images": images,
}
