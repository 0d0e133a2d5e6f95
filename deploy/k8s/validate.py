"""Render the Kubernetes overlays with kustomize and check them, offline and strictly.

    .venv/bin/python -m deploy.k8s.validate                       # both overlays
    .venv/bin/python -m deploy.k8s.validate --overlay exactly-once
    .venv/bin/python -m deploy.k8s.validate --overlay path/to/your/overlay
    .venv/bin/python -m deploy.k8s.validate --offline              # never download

Every rendered object (and the example Secrets of ``secret.example.yaml``) is validated
against the pinned official schemas, made strict (:mod:`deploy.k8s.schemas`: unknown fields,
wrong types, missing required fields fail), then the cross-object rules run
(:mod:`deploy.k8s.rules`, :mod:`deploy.k8s.app_rules`, :mod:`deploy.k8s.keda_rules`). The
schemas are downloaded from the Go module proxy on first use and cached
(:mod:`deploy.k8s.pins`).

kustomize: ``$KUSTOMIZE`` (a kustomize binary), else ``kustomize`` on the PATH, else
``kubectl kustomize``.

Exit codes: 0 all valid; 1 findings (one line each: overlay, check, message); 2 kustomize or
the schemas are unavailable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from deploy.k8s.app_rules import APP_RULES
from deploy.k8s.keda_rules import KEDA_RULES, scaler_parameters
from deploy.k8s.manifests import Manifests, Obj, ident
from deploy.k8s.pins import (
    KAFKA_SCALER_SOURCE,
    KEDA,
    MODULES,
    FetchReport,
    SchemaUnavailableError,
    ensure_schemas,
)
from deploy.k8s.rules import RULES
from deploy.k8s.schemas import load_catalog

K8S_DIR = Path(__file__).resolve().parent
OVERLAYS = ("at-least-once", "exactly-once")
SECRET_EXAMPLE = K8S_DIR / "secret.example.yaml"
ALL_RULES = {**RULES, **APP_RULES, **KEDA_RULES}


class RenderError(RuntimeError):
    """kustomize is missing or could not render an overlay."""


def kustomize_command() -> list[str]:
    """The command that renders a kustomization directory given as its last argument.

    Raises:
        RenderError: neither ``$KUSTOMIZE``, ``kustomize`` nor ``kubectl`` is available.
    """
    explicit = os.environ.get("KUSTOMIZE")
    if explicit:
        return [explicit, "build"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    raise RenderError(
        "neither kustomize nor kubectl is installed (set $KUSTOMIZE, or: go install "
        "sigs.k8s.io/kustomize/kustomize/v5@v5.5.0)"
    )


def load_yaml(text: str) -> list[Obj]:
    """The objects of a multi-document YAML text (empty documents skipped)."""
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def render(directory: Path) -> list[Obj]:
    """The objects ``kustomize build directory`` renders.

    Raises:
        RenderError: kustomize is missing or fails.
    """
    command = [*kustomize_command(), str(directory)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RenderError(f"{' '.join(command)}: {exc}") from exc
    if done.returncode != 0:
        raise RenderError(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return load_yaml(done.stdout)


@dataclass(frozen=True)
class Finding:
    """One schema error or broken rule.

    Attributes:
        overlay: The overlay rendered (empty for objects checked on their own).
        check: ``schema`` or the rule's name.
        message: What is wrong, naming the object.
    """

    overlay: str
    check: str
    message: str

    def __str__(self) -> str:
        where = f"{self.overlay}: " if self.overlay else ""
        return f"{where}[{self.check}] {self.message}"


class Checker:
    """The pinned schemas, the Kafka scaler's parameters and the example Secrets, loaded once.

    Args:
        root: The schema cache (default :func:`deploy.k8s.pins.cache_root`).
        allow_download: False: fail rather than download missing schemas.

    Raises:
        SchemaUnavailableError: the schemas are not cached and cannot be downloaded.
    """

    def __init__(self, root: Path | None = None, *, allow_download: bool = True) -> None:
        self.fetch: FetchReport = ensure_schemas(root, allow_download=allow_download)
        started = time.perf_counter()
        self.catalog = load_catalog(self.fetch.root)
        source = KEDA.file(KAFKA_SCALER_SOURCE, self.fetch.root).read_text(encoding="utf-8")
        self.kafka_scaler = scaler_parameters(source)
        self.secrets = load_yaml(SECRET_EXAMPLE.read_text(encoding="utf-8"))
        self.load_seconds = time.perf_counter() - started

    def check(self, objects: list[Obj], overlay: str = "") -> list[Finding]:
        """Schema errors of every object and example Secret, then every broken rule."""
        findings = [
            Finding(overlay, "schema", f"{ident(obj)}: {line}")
            for obj in [*objects, *self.secrets]
            for line in self.catalog.validate(obj)
        ]
        manifests = Manifests(objects, self.secrets, self.kafka_scaler)
        for name, rule in ALL_RULES.items():
            try:
                lines = rule(manifests)
            except Exception as exc:  # a malformed object must be a finding, not a traceback
                lines = [f"could not be checked: {type(exc).__name__}: {exc}"]
            findings += [Finding(overlay, name, line) for line in lines]
        return findings


@dataclass
class Report:
    """The outcome of :func:`validate`.

    Attributes:
        fetch: What getting the schemas took.
        secrets: Example Secrets checked with each overlay.
        objects: Objects rendered per overlay.
        findings: Every schema error and broken rule.
        seconds: Wall time, downloads included.
    """

    fetch: FetchReport
    secrets: int = 0
    objects: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0


def overlay_directory(overlay: str) -> Path:
    """An overlay's directory: one of :data:`OVERLAYS` by name, or any kustomization folder."""
    return K8S_DIR / "overlays" / overlay if overlay in OVERLAYS else Path(overlay)


def validate(
    overlays: Sequence[str] = OVERLAYS, *, root: Path | None = None, allow_download: bool = True
) -> Report:
    """Render each overlay (a name of :data:`OVERLAYS` or a folder) and check it.

    Raises:
        SchemaUnavailableError: the schemas are not cached and cannot be downloaded.
        RenderError: kustomize is missing or fails.
    """
    started = time.perf_counter()
    checker = Checker(root, allow_download=allow_download)
    report = Report(fetch=checker.fetch, secrets=len(checker.secrets))
    for overlay in overlays:
        objects = render(overlay_directory(overlay))
        report.objects[overlay] = len(objects)
        report.findings += checker.check(objects, overlay)
    report.seconds = time.perf_counter() - started
    return report


def _schema_line(fetch: FetchReport) -> str:
    pins = ", ".join(module.name for module in MODULES)
    if fetch.downloaded:
        size = fetch.downloaded_bytes / 1e6
        how = f"downloaded {len(fetch.downloaded)} module zips ({size:.1f} MB), verified"
    else:
        how = "cached, verified"
    return f"schemas: {pins}: {how} in {fetch.seconds:.2f} s ({fetch.root})"


def main(argv: Sequence[str] | None = None) -> int:
    """The command line; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m deploy.k8s.validate", description=__doc__)
    parser.add_argument(
        "--overlay",
        action="append",
        metavar="NAME_OR_DIR",
        help=f"check only this overlay ({', '.join(OVERLAYS)} or a folder; repeatable)",
    )
    parser.add_argument("--offline", action="store_true", help="never download the schemas")
    parser.add_argument("--cache-dir", type=Path, help="schema cache (default: the user's cache)")
    args = parser.parse_args(argv)
    try:
        report = validate(
            args.overlay or OVERLAYS, root=args.cache_dir, allow_download=not args.offline
        )
    except (SchemaUnavailableError, RenderError) as exc:
        print(f"cannot validate: {exc}", file=sys.stderr)
        return 2
    print(_schema_line(report.fetch))
    for overlay, count in report.objects.items():
        broken = sum(1 for f in report.findings if f.overlay == overlay)
        verdict = "ok" if not broken else f"{broken} findings"
        print(
            f"overlay {overlay}: {count} objects + {report.secrets} example "
            f"Secrets, strict schemas and {len(ALL_RULES)} rules: {verdict}"
        )
    for finding in report.findings:
        print(finding)
    print(f"total {report.seconds:.2f} s")
    return 1 if report.findings else 0


if __name__ == "__main__":
    sys.exit(main())
