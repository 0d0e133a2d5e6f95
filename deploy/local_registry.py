#!/usr/bin/env python3
"""Run a Confluent-compatible Schema Registry (Apicurio Registry) locally, without Docker.

Apicurio Registry's server distribution (``io.apicurio:apicurio-registry-app``, classifier
``all``, a 108 MB ``tar.gz`` of a Quarkus app) is fetched once from Maven Central with Maven,
checked against a pinned sha256, unpacked and started directly with ``java``. Its
Confluent-compatible REST API (what confluent-kafka's ``SchemaRegistryClient`` and the
Confluent serializers speak) is at ``http://127.0.0.1:<port>/apis/ccompat/v7``. Requirements:
Java 17+ and, the first time, Maven 3.

Like ``deploy/local_kafka.py`` (whose process helpers it reuses), it imports only the standard
library, so ``make registry-start`` and CI can run it before the project is installed.

Usage::

    python deploy/local_registry.py start [--port 8081] [--state-dir .registry] [--timeout 90]
    python deploy/local_registry.py status [--state-dir .registry]
    python deploy/local_registry.py stop [--state-dir .registry] [--wipe]

``start`` prints the Confluent API's base URL as the last line on stdout, so
``SCHEMA_REGISTRY_URL=$(python deploy/local_registry.py start | tail -n1)`` works; progress and
errors go to stderr. It reuses a registry already running from the same state dir.

Storage is an H2 database in a file (``apicurio.storage.kind=sql``,
``apicurio.storage.sql.kind=h2``, ``apicurio.datasource.url=jdbc:h2:file:<state>/data/registry``
with ``WRITE_DELAY=0``), so schemas and their ids survive a restart of the registry, even a
SIGKILL right after a registration; ``stop --wipe`` deletes them. Only ``127.0.0.1:<port>`` is
bound. Everything lives in the state directory::

    <state>/apicurio-registry-app-<version>-all.tar.gz  the download (when Maven fetched it;
                                                       else ~/.m2's copy is read in place)
    <state>/app-<version>/    the unpacked distribution (runner jar, lib/)
    <state>/data/             the H2 database (registry.mv.db)
    <state>/registry.log      the registry's log (the previous run's is kept as registry.log.1)
    <state>/registry.pid      pid of the running registry

The module can also be imported (e.g. by a pytest fixture): see :func:`start`, :func:`stop`,
:func:`is_running` and :func:`registry_url`. It targets Linux and macOS.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from pathlib import Path

if __package__ in (None, ""):  # run as `python deploy/local_registry.py`: make `deploy` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from deploy import local_kafka

APICURIO_VERSION = "3.0.9"
"""Apicurio Registry version; keep docker-compose.yml's ``apicurio/apicurio-registry`` in step."""
ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
ARCHIVE_NAME = f"apicurio-registry-app-{APICURIO_VERSION}-all.tar.gz"
ARCHIVE_SHA256 = "2b28181501a20cbf6efcd77f9b7153908fc01f3d3a7c32024c0bd9e1b04c8a43"
"""sha256 of :data:`ARCHIVE_NAME` as published on Maven Central; anything else is refused."""
RUNNER_JAR = f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
# maven-dependency-plugin 3.x fails on the artifact's missing parent POM; 2.8 copies it.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:2.8"

CCOMPAT_PATH = "/apis/ccompat/v7"
"""Path of the Confluent-compatible API under the registry's root."""
READY_PATH = "/health/ready"
DEPLOY_DIR = Path(__file__).resolve().parent
DEFAULT_STATE_DIR = DEPLOY_DIR.parent / ".registry"
DEFAULT_PORT = 8081
DEFAULT_START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
HOST = local_kafka.HOST
JVM_OPTS = ("-Xms64m", "-Xmx384m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
"""A modest heap, the single-threaded collector and the quick JIT compiler only: a registry
serving a handful of schemas needs no more. Measured on 2 busy cores: ready in 6-7 s with
162 MiB RSS, against 13-17 s and 215-245 MiB with C2 as well (Serial or G1)."""

_PORT_ARG = re.compile(r"-Dquarkus\.http\.port=(\d+)(?:\s|$)")
_HTTP_TIMEOUT_S = 2.0
# Ask 127.0.0.1 directly, whatever http_proxy says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))

log = logging.getLogger("local_registry")


class LocalRegistryError(RuntimeError):
    """A local Schema Registry could not be fetched, started, stopped or inspected."""


# --------------------------------------------------------------------------- paths


def registry_url(port: int, host: str = HOST) -> str:
    """The Confluent-compatible API's base URL, ``http://<host>:<port>/apis/ccompat/v7``.

    What confluent-kafka's ``SchemaRegistryClient({"url": ...})`` takes.
    """
    return f"http://{host}:{port}{CCOMPAT_PATH}"


def _app_dir(state_dir: Path) -> Path:
    return state_dir / f"app-{APICURIO_VERSION}"


def _data_dir(state_dir: Path) -> Path:
    return state_dir / "data"


def _pid_file(state_dir: Path) -> Path:
    return state_dir / "registry.pid"


def _log_file(state_dir: Path) -> Path:
    return state_dir / "registry.log"


def _runner_jar(state_dir: Path) -> Path:
    return _app_dir(state_dir) / RUNNER_JAR


def m2_archive() -> Path:
    """Where Maven's local repository (``~/.m2/repository``) keeps the distribution."""
    group = Path.home() / ".m2" / "repository" / "io" / "apicurio" / "apicurio-registry-app"
    return group / APICURIO_VERSION / ARCHIVE_NAME


def datasource_url(state_dir: Path) -> str:
    """The JDBC URL of the registry's H2 database file under ``state_dir``.

    ``WRITE_DELAY=0`` makes H2 write each commit at once (its default waits up to 500 ms, and a
    registry killed in that window lost the schema just registered).

    Raises:
        LocalRegistryError: If the path holds a ``;``, which would end H2's file name.

    """
    path = (_data_dir(state_dir) / "registry").as_posix()
    if ";" in path:
        raise LocalRegistryError(f"the state dir {state_dir} must not contain ';' (H2 URL syntax)")
    return f"jdbc:h2:file:{path};WRITE_DELAY=0"


# ------------------------------------------------------------------ distribution


def sha256_of(path: Path) -> str:
    """The hex sha256 of the file at ``path``."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_archive(path: Path) -> None:
    """Refuse ``path`` unless it is the pinned Apicurio Registry distribution.

    Raises:
        LocalRegistryError: If it cannot be read or its sha256 is not :data:`ARCHIVE_SHA256`.

    """
    try:
        actual = sha256_of(path)
    except OSError as exc:
        raise LocalRegistryError(f"cannot read {path}: {exc}") from exc
    if actual != ARCHIVE_SHA256:
        raise LocalRegistryError(
            f"refusing {path}: its sha256 is {actual}, but Apicurio Registry {APICURIO_VERSION} "
            f"({ARTIFACT}) is pinned to {ARCHIVE_SHA256}. The file is corrupt or not the "
            f"published one: delete it (and {m2_archive()}, Maven's copy) and run again to "
            "fetch it afresh."
        )


def _fetch_archive(state_dir: Path) -> Path:
    """Return the distribution's path: the state dir's copy, else ~/.m2's, else fetched by Maven.

    Raises:
        LocalRegistryError: If Maven is missing or fails.

    """
    for cached in (state_dir / ARCHIVE_NAME, m2_archive()):
        if cached.is_file():
            return cached
    try:
        mvn = local_kafka._maven_executable(
            f"Apicurio Registry {APICURIO_VERSION} ({ARCHIVE_NAME}, 108 MB)"
        )
    except local_kafka.LocalKafkaError as exc:
        raise LocalRegistryError(str(exc)) from exc
    tmp = state_dir / f".download.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    log.info("fetching %s (108 MB) from Maven Central with Maven", ARTIFACT)
    cmd = [
        mvn, "-q", "-B", f"{DEPENDENCY_PLUGIN}:copy", f"-Dartifact={ARTIFACT}",
        f"-DoutputDirectory={tmp}",
    ]  # fmt: skip
    # cwd: a folder without a pom.xml, so Maven runs the goal on its own.
    proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, check=False)
    fetched = tmp / ARCHIVE_NAME
    if proc.returncode != 0 or not fetched.is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        output = (proc.stdout + proc.stderr).strip()[-4000:]
        raise LocalRegistryError(
            f"Maven could not fetch {ARTIFACT} (exit {proc.returncode}): {' '.join(cmd)}\n{output}"
        )
    target = state_dir / ARCHIVE_NAME
    fetched.replace(target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target


def _unpack(archive: Path, dest: Path) -> None:
    """Extract ``archive`` into ``dest``, refusing members that would land outside it.

    Raises:
        LocalRegistryError: If the archive is unreadable or has an unsafe member.

    """
    try:
        with tarfile.open(archive, "r:gz") as tar:
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4+
                tar.extractall(dest, filter="data")
                return
            for member in tar.getmembers():  # what the "data" filter would refuse, roughly
                name = Path(member.name)
                unsafe = name.is_absolute() or ".." in name.parts
                if unsafe or not (member.isfile() or member.isdir()):
                    raise LocalRegistryError(f"{archive}: refusing the member {member.name!r}")
            tar.extractall(dest)
    except (OSError, tarfile.TarError) as exc:
        raise LocalRegistryError(f"cannot unpack {archive}: {exc}") from exc


def resolve_app(state_dir: Path) -> Path:
    """Unpack the verified distribution into ``<state>/app-<version>`` unless it is there.

    The archive is found in the state dir, then in ``~/.m2``, else fetched with Maven (which
    caches it in ``~/.m2``, so the next fetch is offline). It is unpacked into a temporary
    folder renamed at the end, so an interrupted run never leaves a half-filled one behind.

    Returns:
        The path of the runner jar.

    Raises:
        LocalRegistryError: If Maven is missing or fails, or the archive's sha256 is not the
            pinned one, or it does not hold the runner jar.

    """
    app = _app_dir(state_dir)
    marker = app / ".sha256"
    jar = app / RUNNER_JAR
    with contextlib.suppress(OSError):
        if jar.is_file() and marker.read_text(encoding="ascii").strip() == ARCHIVE_SHA256:
            return jar
    archive = _fetch_archive(state_dir)
    verify_archive(archive)
    tmp = state_dir / f".app-{APICURIO_VERSION}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("unpacking %s into %s", archive, app)
    try:
        _unpack(archive, tmp)
        if not (tmp / RUNNER_JAR).is_file():
            raise LocalRegistryError(f"{archive} holds no {RUNNER_JAR} at its top level")
        (tmp / ".sha256").write_text(ARCHIVE_SHA256 + "\n", encoding="ascii")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(app, ignore_errors=True)
    tmp.rename(app)
    return jar


def java_command(java: str, state_dir: Path, port: int) -> list[str]:
    """The command line that runs the registry of ``state_dir`` on ``127.0.0.1:port``."""
    return [
        java, *JVM_OPTS, "-Djava.awt.headless=true",
        f"-Dquarkus.http.host={HOST}", f"-Dquarkus.http.port={port}",
        "-Dapicurio.storage.kind=sql", "-Dapicurio.storage.sql.kind=h2",
        f"-Dapicurio.datasource.url={datasource_url(state_dir)}",
        "-jar", str(_runner_jar(state_dir)),
    ]  # fmt: skip


# ------------------------------------------------------------------ processes and probes


def _registry_pid(state_dir: Path) -> int | None:
    """Return the pid of this state dir's live registry, or None (removing a stale pid file)."""
    pid_file = _pid_file(state_dir)
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    cmdline = local_kafka._pid_cmdline(pid) if local_kafka._pid_alive(pid) else ""
    if str(_runner_jar(state_dir)) in cmdline and datasource_url(state_dir) in cmdline:
        return pid
    log.info("removing stale pid file %s (pid %d is not this registry)", pid_file, pid)
    pid_file.unlink(missing_ok=True)
    return None


def _running_port(pid: int) -> int | None:
    """The HTTP port the registry with ``pid`` was started on, read from its command line."""
    match = _PORT_ARG.search(local_kafka._pid_cmdline(pid))
    return int(match.group(1)) if match else None


def _get_json(url: str, timeout_s: float = _HTTP_TIMEOUT_S) -> object:
    """``GET url`` and decode the JSON body; raises OSError or ValueError on any failure."""
    with _OPENER.open(url, timeout=timeout_s) as response:
        return json.loads(response.read().decode("utf-8"))


def probe(port: int, timeout_s: float = _HTTP_TIMEOUT_S) -> bool:
    """Return True when a registry on ``127.0.0.1:port`` is ready and serves the Confluent API.

    Readiness (``/health/ready``, which checks the database) must say ``UP`` and
    ``GET /apis/ccompat/v7/subjects`` must answer a JSON list.
    """
    try:
        health = _get_json(f"http://{HOST}:{port}{READY_PATH}", timeout_s)
        subjects = _get_json(f"{registry_url(port)}/subjects", timeout_s)
    except (OSError, ValueError):  # URLError and HTTPError are OSErrors
        return False
    return isinstance(health, dict) and health.get("status") == "UP" and isinstance(subjects, list)


def _log_tail(state_dir: Path, lines: int = 40) -> str:
    try:
        text = _log_file(state_dir).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no registry log)"
    return "\n".join(text.splitlines()[-lines:])


def _wait_ready(
    state_dir: Path,
    pid: int,
    port: int,
    timeout_s: float,
    child: subprocess.Popen[bytes] | None,
) -> None:
    """Wait up to ``timeout_s`` seconds until :func:`probe` passes.

    Raises:
        LocalRegistryError: If the process exits, or is not ready in time (with the log tail).

    """
    deadline = time.monotonic() + timeout_s
    log_path = _log_file(state_dir)
    while True:
        if child is not None and child.poll() is not None:
            raise LocalRegistryError(
                f"the registry exited with code {child.returncode} during startup; "
                f"log tail ({log_path}):\n{_log_tail(state_dir)}"
            )
        if child is None and not local_kafka._pid_alive(pid):
            raise LocalRegistryError(
                f"the registry (pid {pid}) died; log tail ({log_path}):\n{_log_tail(state_dir)}"
            )
        if probe(port):
            return
        if time.monotonic() >= deadline:
            raise LocalRegistryError(
                f"the registry did not become ready at {registry_url(port)} within "
                f"{timeout_s:.0f} s; log tail ({log_path}):\n{_log_tail(state_dir)}"
            )
        time.sleep(0.25)


def _java() -> str:
    try:
        return local_kafka._java_executable(needed_by=f"Apicurio Registry {APICURIO_VERSION}")
    except local_kafka.LocalKafkaError as exc:
        raise LocalRegistryError(str(exc)) from exc


# ------------------------------------------------------------------ public API


def is_running(state_dir: Path | str = DEFAULT_STATE_DIR) -> bool:
    """Return True when a registry process started from ``state_dir`` is alive."""
    return _registry_pid(Path(state_dir).resolve()) is not None


def start(
    port: int = DEFAULT_PORT,
    state_dir: Path | str = DEFAULT_STATE_DIR,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
) -> str:
    """Start (or reuse) the registry of ``state_dir`` on ``127.0.0.1:port``.

    Args:
        port: HTTP port of the registry (REST APIs, UI-less).
        state_dir: Folder holding the distribution, the database and the log.
        timeout_s: How long to wait for readiness, in seconds (a start takes ~6-7 s on two
            cores, plus ~1-2 s to unpack the first time and the download before that).

    Returns:
        The Confluent-compatible API's base URL, ``http://127.0.0.1:<port>/apis/ccompat/v7``.

    Raises:
        LocalRegistryError: On missing prerequisites (Java 17+, Maven for the first fetch), a
            distribution whose checksum is not the pinned one, a busy port, a registry of
            this state dir already running on another port, or one that dies or is not ready
            in time (the log tail is included).

    """
    if not 1 <= port <= 65535:
        raise LocalRegistryError(f"port must be in 1..65535, got {port}")
    state = Path(state_dir).resolve()
    url = registry_url(port)
    datasource_url(state)  # refuse an unusable path before anything else
    with local_kafka._locked(state):
        pid = _registry_pid(state)
        if pid is not None:
            running = _running_port(pid)
            if running != port:
                raise LocalRegistryError(
                    f"a registry from {state} is already running (pid {pid}) on port {running}, "
                    f"not {port}; stop it first or use another --state-dir"
                )
            _wait_ready(state, pid, port, timeout_s, child=None)
            log.info("reusing running registry (pid %d) at %s", pid, url)
            return url
        if not local_kafka._port_free(port):
            raise LocalRegistryError(
                f"port {port} on {HOST} is already in use by another process; choose another "
                "one (--port)"
            )
        java = _java()
        resolve_app(state)
        _data_dir(state).mkdir(parents=True, exist_ok=True)
        log_path = _log_file(state)
        if log_path.exists():
            log_path.replace(log_path.with_name(log_path.name + ".1"))
        began = time.monotonic()
        with log_path.open("ab") as out:
            child = subprocess.Popen(
                java_command(java, state, port), cwd=state, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        # local_kafka's _pid_alive reaps the children it knows of (no zombie "alive" forever).
        local_kafka._children[child.pid] = child
        _pid_file(state).write_text(f"{child.pid}\n", encoding="ascii")
        log.info(
            "launched Apicurio Registry %s (pid %d), waiting for %s",
            APICURIO_VERSION, child.pid, url,
        )  # fmt: skip
        try:
            _wait_ready(state, child.pid, port, timeout_s, child=child)
        except BaseException:
            local_kafka._terminate(child.pid, timeout_s=10.0, what="registry")
            local_kafka._children.pop(child.pid, None)
            _pid_file(state).unlink(missing_ok=True)
            raise
        log.info("registry ready at %s after %.1f s", url, time.monotonic() - began)
        return url


def stop(
    state_dir: Path | str = DEFAULT_STATE_DIR,
    wipe: bool = False,
    timeout_s: float = STOP_TIMEOUT_S,
) -> bool:
    """Stop the registry of ``state_dir`` (SIGTERM, then SIGKILL after ``timeout_s`` seconds).

    Args:
        state_dir: The folder given to :func:`start`.
        wipe: Also delete the database (every schema and id); the distribution is kept.
        timeout_s: Grace period for the shutdown, in seconds.

    Returns:
        True if a running registry was stopped, False if none was running.

    """
    state = Path(state_dir).resolve()
    if not state.is_dir():
        return False
    with local_kafka._locked(state):
        pid = _registry_pid(state)
        if pid is not None:
            log.info("stopping registry pid %d", pid)
            if local_kafka._terminate(pid, timeout_s, what="registry"):
                log.info("registry stopped")
            local_kafka._children.pop(pid, None)
        _pid_file(state).unlink(missing_ok=True)
        if wipe:
            log.info("wiping %s", _data_dir(state))
            shutil.rmtree(_data_dir(state), ignore_errors=True)
    return pid is not None


# ------------------------------------------------------------------ CLI


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="local_registry.py",
        description=(
            f"Run Apicurio Registry {APICURIO_VERSION} (Confluent-compatible Schema Registry "
            f"API at {CCOMPAT_PATH}) with file storage, no Docker."
        ),
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="distribution, database and log (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", parents=[common], help="start or reuse the registry")
    p_start.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="HTTP port (default: %(default)s)"
    )
    p_start.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT_S,
        help="seconds to wait for readiness (default: %(default)s)",
    )
    p_stop = sub.add_parser("stop", parents=[common], help="stop the registry")
    p_stop.add_argument("--wipe", action="store_true", help="also delete the database")
    sub.add_parser("status", parents=[common], help="print running/stopped (exit 0/1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command line interface and return the process exit code."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="local_registry: %(message)s", stream=sys.stderr)
    try:
        if args.command == "start":
            url = start(port=args.port, state_dir=args.state_dir, timeout_s=args.timeout)
            print(url, flush=True)
            return 0
        if args.command == "stop":
            if not stop(state_dir=args.state_dir, wipe=args.wipe):
                log.info("no registry was running")
            return 0
        state = Path(args.state_dir).resolve()
        pid = _registry_pid(state)
        if pid is None:
            print("stopped")
            return 1
        port = _running_port(pid)
        if port is None:
            print(f"running pid={pid} (port unknown)")
            return 0
        answering = "" if probe(port) else " (not answering)"
        print(f"running pid={pid} url={registry_url(port)}{answering}")
        return 0
    except LocalRegistryError as exc:
        print(f"local_registry: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
