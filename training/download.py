"""The per-user dataset cache and checksum-verified downloads into it.

Files are streamed to a hidden temporary file beside their destination, their sha256 is
checked, and only then are they renamed into place (``os.replace``), so the cache never
holds a partial or unverified file. Archives are unpacked with ``tarfile``'s ``data``
filter (no absolute paths, links out of the folder or device files).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from training.data import DatasetError

#: Environment variable overriding the cache folder.
CACHE_DIR_ENV = "CLASSIFIER_CACHE_DIR"
#: Environment variable that, set to ``1``, forbids downloads (offline machines, CI).
OFFLINE_ENV = "CLASSIFIER_OFFLINE"
#: Seconds to wait for the server to answer (each read, not the whole transfer).
DEFAULT_TIMEOUT_S = 30.0


class DownloadError(DatasetError):
    """A download failed (no network, HTTP error) or its checksum did not match."""


@dataclass(frozen=True)
class Remote:
    """A file at the publisher's address and its expected sha256.

    Attributes:
        url: Where to download it (``https://``; ``file://`` works too, e.g. in tests).
        sha256: Expected hex digest of the downloaded bytes.
        provenance: Where the URL and the checksum were taken from.
        archive: A ``.tar.gz`` to unpack into the dataset folder instead of a plain file.
        filename: Name to store the download under (default: the URL's last segment).
    """

    url: str
    sha256: str
    provenance: str
    archive: bool = False
    filename: str | None = None

    @property
    def name(self) -> str:
        """The download's file name."""
        return self.filename or self.url.rstrip("/").rsplit("/", 1)[-1]


def cache_dir() -> Path:
    """The per-user dataset cache folder (not created here).

    ``$CLASSIFIER_CACHE_DIR``, else ``$XDG_CACHE_HOME/stream-text-classifier/datasets``,
    else ``~/.cache/stream-text-classifier/datasets``.
    """
    explicit = os.environ.get(CACHE_DIR_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "stream-text-classifier" / "datasets"


def downloads_allowed() -> bool:
    """False when ``$CLASSIFIER_OFFLINE`` is set to ``1``/``true``/``yes``."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in {"1", "true", "yes"}


def download(remote: Remote, dest: Path, timeout: float = DEFAULT_TIMEOUT_S) -> Path:
    """Download ``remote`` to ``dest`` atomically, verifying its sha256.

    Args:
        remote: URL and expected checksum.
        dest: Final path; its folder is created. An existing file is replaced.
        timeout: Seconds to wait on the connection and on each read.

    Returns:
        ``dest``.

    Raises:
        DownloadError: network or HTTP failure (the message names the URL), or a sha256
            mismatch (nothing is left behind at ``dest``).
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(remote.url, timeout=timeout) as response:
                    for block in iter(lambda: response.read(1 << 20), b""):
                        digest.update(block)
                        out.write(block)
            except (urllib.error.URLError, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                raise DownloadError(f"cannot download {remote.url}: {reason}") from exc
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if actual != remote.sha256:
            raise DownloadError(
                f"checksum mismatch for {remote.url}: expected sha256 {remote.sha256}, "
                f"got {actual}; the file was discarded"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def extract_tar(archive: Path, dest_dir: Path, members: list[str]) -> None:
    """Unpack the top-level ``members`` (files or folders) of a tar archive into ``dest_dir``.

    The archive is unpacked into a temporary folder inside ``dest_dir`` first; each member
    is then renamed into place, so ``dest_dir`` never shows a half-unpacked folder.

    Raises:
        DownloadError: the archive is unreadable or lacks one of ``members``.
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest_dir))
    try:
        try:
            with tarfile.open(archive) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise DownloadError(f"cannot unpack {archive}: {exc}") from exc
        for member in members:
            src = tmp / member
            if not src.exists():
                raise DownloadError(f"{archive} has no {member}")
            target = dest_dir / member
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(src, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
