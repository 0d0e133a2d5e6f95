"""The pinned schema sources: which module versions and files, and how they are fetched.

Three Go module zips, fetched from the Go module proxy (``$GOPROXY``'s first proxy, else
https://proxy.golang.org), as ``go mod download`` would fetch them:

- ``k8s.io/kubernetes`` — the official OpenAPI v3 documents of the API server
  (``api/openapi-spec/v3/*.json``), one per group/version;
- ``github.com/kedacore/keda/v2`` — the ScaledObject and TriggerAuthentication CRDs, and the
  Kafka scaler's source, whose struct tags list the trigger's parameters
  (:mod:`deploy.k8s.keda_rules`);
- ``github.com/prometheus-operator/prometheus-operator`` — the ServiceMonitor CRD.

Each zip is checked before anything in it is read: its sha256 and its Go checksum-database
hash (``h1:``, what ``go.sum`` records and sum.golang.org publishes for the version) must both
equal the pins below; then each extracted file's sha256 must equal its pin. Only the files
listed are kept, under :func:`cache_root`; a later run finds them there, re-checks their sha256
and downloads nothing. To move a pin, change the version, both hashes, the size and the
files' sha256 together.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_GO_PROXY = "https://proxy.golang.org"

#: Bytes read per chunk while downloading and hashing.
_CHUNK = 1 << 20


@dataclass(frozen=True)
class PinnedModule:
    """One Go module version and the files taken from its zip, all pinned.

    Attributes:
        path: The module path, e.g. ``k8s.io/kubernetes``.
        version: The exact version, e.g. ``v1.32.13``.
        zip_sha256: sha256 of the module zip as the proxy serves it.
        h1: The Go checksum-database hash of the zip's content (``go.sum``'s ``h1:``).
        zip_bytes: The zip's size, for the report.
        files: Path inside the module → sha256 of that file.
    """

    path: str
    version: str
    zip_sha256: str
    h1: str
    zip_bytes: int
    files: Mapping[str, str]

    @property
    def name(self) -> str:
        """``path@version``."""
        return f"{self.path}@{self.version}"

    def zip_url(self, proxy: str) -> str:
        """The zip's address on ``proxy`` (module path escaped as the proxy protocol says)."""
        escaped = re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), self.path)
        return f"{proxy.rstrip('/')}/{escaped}/@v/{self.version}.zip"

    def directory(self, root: Path) -> Path:
        """Where this module's files are cached under ``root``."""
        return root / self.name.replace("/", "_")

    def file(self, relative: str, root: Path | None = None) -> Path:
        """The cached path of one of :attr:`files` (call :func:`ensure_schemas` first)."""
        if relative not in self.files:
            raise KeyError(f"{relative} is not one of the files pinned for {self.name}")
        return self.directory(root or cache_root()) / relative


_OPENAPI = "api/openapi-spec/v3/"

KUBERNETES = PinnedModule(
    path="k8s.io/kubernetes",
    version="v1.32.13",
    zip_sha256="545b73e6a5df5b9db8c724e4d9b60d2c0c70f55e48de455a067c16f4f2dad86e",
    h1="h1:5TGYdZ6YZqdp6h/Rp1vX/4TIoybMPdgv97LCZCtPuNQ=",
    zip_bytes=17_401_838,
    files={
        _OPENAPI + "api__v1_openapi.json": (
            "e70786b2b36d53fa99dd72910f2ef82a12384abc8d28ce144ebc9899c32b109c"
        ),
        _OPENAPI + "apis__apps__v1_openapi.json": (
            "ca3e54d3c12821353fa4c8aea2704d29ad1a216a142dbaefbab6ecea69457375"
        ),
        _OPENAPI + "apis__batch__v1_openapi.json": (
            "5f09687551d11cc84567d8cc5f97b65465512c81d496c8c63f712a5e34352447"
        ),
        _OPENAPI + "apis__policy__v1_openapi.json": (
            "67d39994828e99e249a930a28a694333b640ea81aecd7a2093927ea2143061ec"
        ),
        _OPENAPI + "apis__networking.k8s.io__v1_openapi.json": (
            "215fb8d4007896a5e8c413cc7fd55235e4749ffaed0aeecbcbfd264a31d9e84c"
        ),
        _OPENAPI + "apis__autoscaling__v2_openapi.json": (
            "56e5be885071fa09dbc915513fc2550b8c07305cfd222edeff689adbe15a1b37"
        ),
    },
)

KEDA = PinnedModule(
    path="github.com/kedacore/keda/v2",
    version="v2.21.0",
    zip_sha256="74b59fe16144250748b716d6dc8789dee52d26164daab732145bed60456013a4",
    h1="h1:R6z2HZvstK4RLUMxroNACzBj74xGxt3kG59b5Xc+Xps=",
    zip_bytes=2_986_999,
    files={
        "config/crd/bases/keda.sh_scaledobjects.yaml": (
            "af35555862a83933b074af14ad439c4b4ceabaf4daa3e9338e9b23e36d308d80"
        ),
        "config/crd/bases/keda.sh_triggerauthentications.yaml": (
            "ed59ab37b2fa9a18119484a3dbd849b0b18ed25e1aea91d9f1305d4da2215bd8"
        ),
        "pkg/scalers/kafka_scaler.go": (
            "ed07895c6d3fc6d2884005524f86a7fb814308216ec4c79dd8f6ed1f85f8d748"
        ),
    },
)

PROMETHEUS_OPERATOR = PinnedModule(
    path="github.com/prometheus-operator/prometheus-operator",
    version="v0.85.0",
    zip_sha256="0bdb88ed823d0f2e86cf909638439b6ad1da744a228172c7411d9987527dc5d1",
    h1="h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s=",
    zip_bytes=4_083_849,
    files={
        "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml": (
            "1dae27b7189b5ce7b9ab764656c18b4c75a45cde1e6f3af6a5e84c4317628919"
        ),
    },
)

MODULES = (KUBERNETES, KEDA, PROMETHEUS_OPERATOR)

#: The Kafka scaler's source in :data:`KEDA` (its struct tags list the trigger's parameters).
KAFKA_SCALER_SOURCE = "pkg/scalers/kafka_scaler.go"


class SchemaUnavailableError(RuntimeError):
    """The pinned schemas are not cached and could not be downloaded (or failed a check)."""


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/stream-text-classifier/k8s-schemas`` (default ``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "stream-text-classifier" / "k8s-schemas"


def go_proxy(environ: Mapping[str, str] | None = None) -> str:
    """The first proxy of ``$GOPROXY`` (``direct`` entries skipped), else proxy.golang.org.

    Raises:
        SchemaUnavailableError: ``GOPROXY`` is ``off`` before any proxy.
    """
    value = (os.environ if environ is None else environ).get("GOPROXY", "")
    for entry in re.split(r"[,|]", value):
        entry = entry.strip()
        if entry == "off":
            raise SchemaUnavailableError("GOPROXY=off: the Go module proxy may not be used")
        if entry and entry != "direct":
            return entry
    return DEFAULT_GO_PROXY


def go_h1(zip_path: Path) -> str:
    """The ``h1:`` hash of a module zip, as Go's ``dirhash.Hash1`` computes it.

    The sha256 of one line ``<sha256 hex>, two spaces, <file name>, newline`` per file of the
    zip, sorted by name, base64-encoded (golang.org/x/mod/sumdb/dirhash).
    """
    with zipfile.ZipFile(zip_path) as archive:
        names = sorted(archive.namelist())
        lines = []
        for name in names:
            digest = hashlib.sha256()
            with archive.open(name) as member:
                for chunk in iter(lambda: member.read(_CHUNK), b""):
                    digest.update(chunk)
            lines.append(f"{digest.hexdigest()}  {name}\n")
    summary = hashlib.sha256("".join(lines).encode()).digest()
    return "h1:" + base64.b64encode(summary).decode()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cached(module: PinnedModule, root: Path) -> bool:
    """Every pinned file of ``module`` is in the cache with its pinned sha256."""
    for relative, sha in module.files.items():
        path = module.directory(root) / relative
        if not path.is_file() or _sha256(path) != sha:
            return False
    return True


def _download(url: str, target: Path, attempts: int = 3) -> None:
    """Download ``url`` to ``target`` (a few attempts for transient failures)."""
    for attempt in range(1, attempts + 1):
        try:
            with urllib.request.urlopen(url, timeout=60) as response, target.open("wb") as out:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
            return
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            if attempt == attempts:
                raise SchemaUnavailableError(f"cannot download {url}: {exc}") from exc
            time.sleep(2 * attempt)


def _fetch(module: PinnedModule, root: Path, proxy: str) -> None:
    """Download ``module``'s zip, verify it, and extract its pinned files into the cache."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as scratch:
        zip_path = Path(scratch) / "module.zip"
        _download(module.zip_url(proxy), zip_path)
        sha = _sha256(zip_path)
        if sha != module.zip_sha256:
            raise SchemaUnavailableError(
                f"{module.name}: the zip's sha256 is {sha}, pinned {module.zip_sha256}"
            )
        h1 = go_h1(zip_path)
        if h1 != module.h1:
            raise SchemaUnavailableError(
                f"{module.name}: the zip's hash is {h1}, pinned {module.h1}"
            )
        prefix = f"{module.name}/"
        with zipfile.ZipFile(zip_path) as archive:
            for relative, pinned in module.files.items():
                data = archive.read(prefix + relative)
                if hashlib.sha256(data).hexdigest() != pinned:
                    raise SchemaUnavailableError(f"{module.name}/{relative}: sha256 mismatch")
                target = module.directory(root) / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(target.name + ".partial")
                partial.write_bytes(data)
                partial.replace(target)


@dataclass
class FetchReport:
    """What :func:`ensure_schemas` did.

    Attributes:
        root: The cache folder.
        downloaded: Modules downloaded this time (``path@version``); empty on a warm cache.
        downloaded_bytes: Their zips' sizes together.
        seconds: Time taken, checks included.
    """

    root: Path
    downloaded: list[str] = field(default_factory=list)
    downloaded_bytes: int = 0
    seconds: float = 0.0


def ensure_schemas(root: Path | None = None, *, allow_download: bool = True) -> FetchReport:
    """Make sure every pinned file is cached and verified; download what is missing.

    Args:
        root: The cache folder (default :func:`cache_root`).
        allow_download: False: fail instead of downloading.

    Raises:
        SchemaUnavailableError: a file is missing and cannot be downloaded, or a download
            does not match its pins.
    """
    root = root or cache_root()
    started = time.perf_counter()
    report = FetchReport(root=root)
    for module in MODULES:
        if _cached(module, root):
            continue
        if not allow_download:
            raise SchemaUnavailableError(f"{module.name} is not cached in {root}")
        _fetch(module, root, go_proxy())
        report.downloaded.append(module.name)
        report.downloaded_bytes += module.zip_bytes
    report.seconds = time.perf_counter() - started
    return report
