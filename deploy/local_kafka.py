#!/usr/bin/env python3
"""Run a single-node Apache Kafka broker (KRaft mode) locally, without Docker.

The official Apache Kafka jars are resolved from Maven Central with Maven
(``deploy/kafka/pom.xml``) and the broker is started directly with ``java``, so
the only requirements are Java 17+ and, the first time, Maven 3.

One file of ~1070 lines on purpose: ``make broker-start`` and CI run it with the system Python
before the project (or anything from PyPI) is installed, so it imports only the standard
library and can be copied on its own.

Usage::

    python deploy/local_kafka.py start [--port 9092] [--state-dir .kafka] [--timeout 90]
        [--sasl-port P] [--sasl-ssl-port Q] [--scram-user NAME:PASSWORD ...]
    python deploy/local_kafka.py status [--state-dir .kafka]
    python deploy/local_kafka.py stop [--state-dir .kafka] [--wipe]

``start`` prints the bootstrap servers string (``127.0.0.1:<port>``) as the last
line on stdout, so ``BOOTSTRAP=$(python deploy/local_kafka.py start | tail -n1)``
works. Progress and errors go to stderr.

The broker binds ``127.0.0.1:<port>`` (clients) and ``127.0.0.1:<port + 1>``
(KRaft controller). Secured listeners are opt-in, beside the plain one (which stays as is):
``--sasl-port`` adds a ``SASL_PLAINTEXT`` listener and ``--sasl-ssl-port`` a ``SASL_SSL`` one,
both authenticating SCRAM-SHA-256 and SCRAM-SHA-512 users. The users are written into the
KRaft metadata when storage is formatted (first start, or after ``stop --wipe``); the default
is ``classifier`` / ``classifier-secret``. The TLS listener's certificate is signed by a
throw-away CA that ``keytool`` (part of the JDK) creates once per state dir; clients trust
``<state>/tls/ca.pem`` (see :func:`ca_certificate`). Everything lives in the state
directory::

    <state>/libs-<version>/   broker jars (copied from ~/.m2 by Maven)
    <state>/data/             log.dirs (topics, KRaft metadata log, meta.properties)
    <state>/server.properties broker configuration (rewritten on every start)
    <state>/log4j2.yaml       logging configuration
    <state>/broker.log        broker log (the previous run's is kept as broker.log.1)
    <state>/broker.pid        pid of the running broker
    <state>/scram-users.json  SCRAM user names formatted into data/ (password digests only)
    <state>/tls/              test CA (ca.pem, ca.p12), broker keystore (broker.p12), password

The module can also be imported (e.g. by a pytest fixture): see :func:`start`,
:func:`stop`, :func:`is_running`, :func:`find_free_port_pair` and :func:`ca_certificate`. It
uses only the Python standard library and targets Linux and macOS.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from pathlib import Path

KAFKA_VERSION = "4.1.1"
"""Apache Kafka version; must equal ``kafka.version`` in ``deploy/kafka/pom.xml``."""

DEPLOY_DIR = Path(__file__).resolve().parent
POM_PATH = DEPLOY_DIR / "kafka" / "pom.xml"
DEFAULT_STATE_DIR = DEPLOY_DIR.parent / ".kafka"
DEFAULT_PORT = 9092
DEFAULT_START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
HOST = "127.0.0.1"
MIN_JAVA_MAJOR = 17
STARTED_MARKER = "Kafka Server started"
JVM_HEAP_OPTS = ("-Xms256m", "-Xmx768m")
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
DEFAULT_SCRAM_USERS: Mapping[str, str] = {"classifier": "classifier-secret"}
"""SCRAM user (name: password) created when a SASL listener is asked for and none is named."""
CERT_VALIDITY_DAYS = 3650

_MAIN_CLASS = "kafka.Kafka"
_CONFIG_DUMP_LINE = re.compile(r"^\t[\w.\-]+ = ")
_POM_NS = {"m": "http://maven.apache.org/POM/4.0.0"}
# Characters the storage tool's --add-scram parser takes unquoted in a name or password.
_SCRAM_TOKEN = re.compile(r"[A-Za-z0-9._-]+")
_SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
_LISTENER = re.compile(r"(?:^|,)\s*(\w+)://[^,]*:(\d+)")

log = logging.getLogger("local_kafka")

# Brokers launched by this Python process, so that ``stop`` can reap them
# (a finished child would otherwise linger as a zombie that still "exists").
_children: dict[int, subprocess.Popen[bytes]] = {}


class LocalKafkaError(RuntimeError):
    """A local broker could not be started, stopped or inspected."""


# --------------------------------------------------------------------------- paths


def _libs_dir(state_dir: Path) -> Path:
    return state_dir / f"libs-{KAFKA_VERSION}"


def _data_dir(state_dir: Path) -> Path:
    return state_dir / "data"


def _pid_file(state_dir: Path) -> Path:
    return state_dir / "broker.pid"


def _log_file(state_dir: Path) -> Path:
    return state_dir / "broker.log"


def _server_properties(state_dir: Path) -> Path:
    return state_dir / "server.properties"


def _log4j_config(state_dir: Path) -> Path:
    return state_dir / "log4j2.yaml"


def _scram_record(state_dir: Path) -> Path:
    return state_dir / "scram-users.json"


def _tls_dir(state_dir: Path) -> Path:
    return state_dir / "tls"


def ca_certificate(state_dir: Path | str = DEFAULT_STATE_DIR) -> Path:
    """The PEM certificate of the CA that signed the ``SASL_SSL`` listener's certificate.

    Clients of that listener trust it (librdkafka: ``ssl.ca.location``). It exists once a
    broker of ``state_dir`` has been started with a ``sasl_ssl_port``.
    """
    return _tls_dir(Path(state_dir).resolve()) / "ca.pem"


# ------------------------------------------------------------------ version pinning


def pom_kafka_version(pom: Path = POM_PATH) -> str:
    """Return the ``kafka.version`` property declared in the Maven POM.

    Raises:
        LocalKafkaError: If the POM is missing or declares no ``kafka.version``.

    """
    try:
        root = ET.parse(pom).getroot()
    except (OSError, ET.ParseError) as exc:
        raise LocalKafkaError(f"cannot read {pom}: {exc}") from exc
    node = root.find("m:properties/m:kafka.version", _POM_NS)
    if node is None or not (node.text or "").strip():
        raise LocalKafkaError(f"{pom} declares no <kafka.version> property")
    return (node.text or "").strip()


def check_pom_version(pom: Path = POM_PATH) -> None:
    """Fail unless the POM pins the same Kafka version as :data:`KAFKA_VERSION`.

    Raises:
        LocalKafkaError: If the versions differ.

    """
    declared = pom_kafka_version(pom)
    if declared != KAFKA_VERSION:
        raise LocalKafkaError(
            f"{pom} pins kafka.version={declared} but {Path(__file__).name} has "
            f"KAFKA_VERSION={KAFKA_VERSION}; keep them (and docker-compose.yml) in step"
        )


# ------------------------------------------------------------------ prerequisites


def _java_executable(needed_by: str = f"Apache Kafka {KAFKA_VERSION}") -> str:
    """Return the ``java`` to use ($JAVA_HOME first, then PATH), checking it is 17+.

    ``needed_by`` names what needs it in the error message (deploy/local_registry.py reuses this).
    """
    java: str | None = None
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        java = str(Path(java_home) / "bin" / "java")
    else:
        java = shutil.which("java")
    if java is None:
        raise LocalKafkaError(
            "`java` was not found on PATH (nor in $JAVA_HOME/bin). Install a Java "
            f"{MIN_JAVA_MAJOR}+ runtime, e.g. `apt-get install openjdk-17-jre-headless` "
            "or `brew install openjdk@17`, or set JAVA_HOME."
        )
    proc = subprocess.run(
        [java, "-version"], capture_output=True, text=True, check=False, timeout=60
    )
    match = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if match is None:
        raise LocalKafkaError(f"cannot tell the version of {java}: {proc.stderr.strip()}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0_402" style
        major = int(match.group(2))
    if major < MIN_JAVA_MAJOR:
        raise LocalKafkaError(
            f"{java} is Java {major}; {needed_by} needs Java "
            f"{MIN_JAVA_MAJOR}+. Install e.g. openjdk-17-jre-headless or set JAVA_HOME."
        )
    return java


def _maven_executable(needed_for: str = "the Kafka jars") -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise LocalKafkaError(
            f"`mvn` was not found on PATH; it is needed once to fetch {needed_for} "
            "from Maven Central. Install Apache Maven 3, e.g. `apt-get install maven` "
            "or `brew install maven`."
        )
    return mvn


def _has_jars(libs: Path) -> bool:
    return (libs / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file() and (
        libs / f"kafka-clients-{KAFKA_VERSION}.jar"
    ).is_file()


def resolve_jars(state_dir: Path) -> Path:
    """Copy the broker's runtime jars into ``<state>/libs-<version>`` unless present.

    Maven downloads into its own cache (``~/.m2``) the first time; later runs are
    offline copies. The copy goes to a temporary folder renamed at the end, so an
    interrupted run never leaves a half-filled libs folder behind.

    Returns:
        The libs folder.

    Raises:
        LocalKafkaError: If Maven is missing or fails.

    """
    libs = _libs_dir(state_dir)
    if _has_jars(libs):
        return libs
    mvn = _maven_executable()
    tmp = state_dir / f".libs-{KAFKA_VERSION}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    log.info("resolving Apache Kafka %s jars with Maven into %s", KAFKA_VERSION, libs)
    cmd = [
        mvn, "-q", "-B", "-f", str(POM_PATH), "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}", "-DincludeScope=runtime",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or not _has_jars(tmp):
        shutil.rmtree(tmp, ignore_errors=True)
        output = (proc.stdout + proc.stderr).strip()[-4000:]
        raise LocalKafkaError(
            f"Maven could not resolve the Kafka jars (exit {proc.returncode}): "
            f"{' '.join(cmd)}\n{output}"
        )
    shutil.rmtree(libs, ignore_errors=True)
    tmp.rename(libs)
    return libs


# ------------------------------------------------------------------ configuration


def _client_listeners(
    port: int, sasl_port: int | None = None, sasl_ssl_port: int | None = None
) -> dict[str, int]:
    """The client listeners asked for, name (= security protocol) to port, plain one first.

    Raises:
        LocalKafkaError: If a port is out of range or two listeners share a port.

    """
    if not 1 <= port <= 65534:
        raise LocalKafkaError(f"port must be in 1..65534 (port + 1 is the controller), got {port}")
    listeners = {"PLAINTEXT": port}
    for name, extra in (("SASL_PLAINTEXT", sasl_port), ("SASL_SSL", sasl_ssl_port)):
        if extra is None:
            continue
        if not 1 <= extra <= 65535:
            raise LocalKafkaError(f"the {name} port must be in 1..65535, got {extra}")
        if extra in (*listeners.values(), port + 1):
            raise LocalKafkaError(
                f"the {name} port {extra} clashes with another listener "
                f"(client {port}, controller {port + 1})"
            )
        listeners[name] = extra
    return listeners


def _server_properties_text(
    state_dir: Path, listeners: Mapping[str, int], keystore_password: str | None = None
) -> str:
    port = listeners["PLAINTEXT"]
    controller_port = port + 1
    client = [f"{name}://{HOST}:{p}" for name, p in listeners.items()]
    secured = [name for name in listeners if name != "PLAINTEXT"]
    protocols = ["PLAINTEXT:PLAINTEXT", "CONTROLLER:PLAINTEXT", *(f"{n}:{n}" for n in secured)]
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": ",".join([client[0], f"CONTROLLER://{HOST}:{controller_port}", *client[1:]]),
        "advertised.listeners": ",".join(client),
        "listener.security.protocol.map": ",".join(protocols),
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": _data_dir(state_dir).as_posix(),
        "num.partitions": "3",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    if secured:
        props["sasl.enabled.mechanisms"] = ",".join(SCRAM_MECHANISMS)
        for name in secured:  # the broker side of SCRAM needs a login module, no credentials
            for mechanism in SCRAM_MECHANISMS:
                props[f"listener.name.{name.lower()}.{mechanism.lower()}.sasl.jaas.config"] = (
                    _SCRAM_LOGIN
                )
    if "SASL_SSL" in listeners:
        if keystore_password is None:
            raise LocalKafkaError("a SASL_SSL listener needs the broker keystore's password")
        keystore = (_tls_dir(state_dir) / "broker.p12").as_posix()
        props["ssl.keystore.type"] = "PKCS12"
        props["ssl.keystore.location"] = keystore
        props["ssl.keystore.password"] = keystore_password
        props["ssl.key.password"] = keystore_password
    lines = [
        f"# Written by deploy/local_kafka.py for Apache Kafka {KAFKA_VERSION} (on each start)."
    ]
    lines += [f"{key}={value}" for key, value in props.items()]
    return "\n".join(lines) + "\n"


def _log4j_yaml_text(state_dir: Path) -> str:
    # json.dumps gives a valid double-quoted YAML scalar for any path.
    log_path = json.dumps(_log_file(state_dir).as_posix())
    return f"""\
# Written by deploy/local_kafka.py: broker log at INFO to a single file.
Configuration:
  Appenders:
    File:
      name: BrokerFile
      fileName: {log_path}
      append: true
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: BrokerFile
    Logger:
      - name: kafka.request.logger
        level: WARN
        additivity: false
        AppenderRef:
          - ref: BrokerFile
      - name: org.apache.kafka.raft.KafkaRaftClient
        level: WARN
"""


def _read_properties(path: Path) -> dict[str, str]:
    props: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for raw in path.read_text(encoding="utf-8").splitlines():
            line = raw.strip()
            if line and not line.startswith(("#", "!")) and "=" in line:
                key, _, value = line.partition("=")
                props[key.strip()] = value.strip()
    return props


def _configured_listeners(state_dir: Path) -> dict[str, int]:
    """Return the client listeners (name to port) written in ``<state>/server.properties``."""
    advertised = _read_properties(_server_properties(state_dir)).get("advertised.listeners", "")
    return {name: int(port) for name, port in _LISTENER.findall(advertised)}


def _configured_port(state_dir: Path) -> int | None:
    """Return the plain client port written in ``<state>/server.properties``, if any."""
    return _configured_listeners(state_dir).get("PLAINTEXT")


def _describe(listeners: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {port}" for name, port in listeners.items()) or "no listener"


def _random_cluster_id() -> str:
    """Return a random cluster id: URL-safe base64 of a UUID4, without padding.

    Like Kafka's own ``Uuid.randomUuid()``, ids starting with ``-`` are redrawn:
    the storage tool's argument parser would take them for an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _formatted(state_dir: Path) -> bool:
    return (_data_dir(state_dir) / "meta.properties").is_file()


def _scram_users(listeners: Mapping[str, int], users: Mapping[str, str] | None) -> dict[str, str]:
    """The SCRAM users to format: those given, else the default one when SASL is asked for.

    Raises:
        LocalKafkaError: If users are given without a SASL listener, or a name or password
            has characters the storage tool cannot take.

    """
    sasl = len(listeners) > 1
    if users and not sasl:
        raise LocalKafkaError("SCRAM users need a SASL listener (--sasl-port or --sasl-ssl-port)")
    chosen = dict(users or (DEFAULT_SCRAM_USERS if sasl else {}))
    for name, password in chosen.items():
        if not (_SCRAM_TOKEN.fullmatch(name) and _SCRAM_TOKEN.fullmatch(password)):
            raise LocalKafkaError(
                f"SCRAM user {name!r}: names and passwords may only use letters, digits, '.', "
                "'_' and '-'"
            )
    return chosen


def _scram_digests(users: Mapping[str, str]) -> dict[str, str]:
    """What ``scram-users.json`` records per user: a digest, never the password."""
    return {
        name: hashlib.sha256(f"{name}\0{password}".encode()).hexdigest()
        for name, password in sorted(users.items())
    }


def _check_scram_users(state_dir: Path, users: Mapping[str, str]) -> None:
    """Fail when a formatted data dir holds other SCRAM users than those asked for.

    Raises:
        LocalKafkaError: If the users differ (they are only written when formatting).

    """
    if not users or not _formatted(state_dir):
        return
    try:
        recorded = json.loads(_scram_record(state_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = {}
    if recorded != _scram_digests(users):
        raise LocalKafkaError(
            f"{_data_dir(state_dir)} was formatted with SCRAM users {sorted(recorded) or 'none'}, "
            f"not {sorted(users)} (or other passwords); users are created only when storage is "
            "formatted: run `stop --wipe` first or use another --state-dir"
        )


def _format_storage(
    java: str, libs: Path, state_dir: Path, users: Mapping[str, str] | None = None
) -> None:
    """Format the KRaft log dir with a fresh random cluster id (once per data dir).

    Each of ``users`` (name: password) gets a credential for every SCRAM mechanism.
    """
    if _formatted(state_dir):
        return
    cluster_id = _random_cluster_id()
    log.info("formatting %s (cluster id %s)", _data_dir(state_dir), cluster_id)
    scram = [
        f"--add-scram={mechanism}=[name={name},password={password}]"
        for name, password in (users or {}).items()
        for mechanism in SCRAM_MECHANISMS
    ]
    cmd = [
        java, "-cp", f"{libs}/*",
        f"-Dlog4j2.configurationFile={_log4j_config(state_dir)}",
        "kafka.tools.StorageTool", "format",
        f"--cluster-id={cluster_id}", "--config", str(_server_properties(state_dir)), *scram,
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    if proc.returncode != 0:
        raise LocalKafkaError(
            f"kafka-storage format failed (exit {proc.returncode}):\n"
            f"{(proc.stdout + proc.stderr).strip()[-4000:]}"
        )
    record = json.dumps(_scram_digests(users or {}), indent=1)
    _scram_record(state_dir).write_text(record + "\n", encoding="utf-8")


def _keytool(java: str) -> str:
    beside = Path(java).resolve().parent / "keytool"
    if beside.is_file():
        return str(beside)
    found = shutil.which("keytool")
    if found is None:
        raise LocalKafkaError(
            f"`keytool` (part of the JDK) was found neither beside {java} nor on PATH; it "
            "creates the SASL_SSL listener's certificate"
        )
    return found


def _ensure_tls_material(java: str, state_dir: Path) -> str:
    """Create (once) a test CA and a broker key and certificate signed by it, for 127.0.0.1.

    Written to ``<state>/tls``: ``ca.pem`` (what clients trust), ``ca.p12`` (the CA's key),
    ``broker.p12`` (the broker's keystore) and ``password`` (of both keystores). The files
    are made in a temporary folder renamed at the end, so a failure leaves none behind.

    Returns:
        The keystore password.

    Raises:
        LocalKafkaError: If ``keytool`` is missing or fails.

    """
    tls = _tls_dir(state_dir)
    if all((tls / name).is_file() for name in ("ca.pem", "broker.p12", "password")):
        return (tls / "password").read_text(encoding="ascii").strip()
    keytool = _keytool(java)
    tmp = state_dir / f".tls.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    password = secrets.token_urlsafe(18)
    (tmp / "password").write_text(password + "\n", encoding="ascii")
    (tmp / "password").chmod(0o600)
    store = ["-storetype", "PKCS12", "-storepass:env", "LOCAL_KAFKA_STOREPASS"]
    key = ["-keyalg", "EC", "-groupname", "secp256r1", "-validity", str(CERT_VALIDITY_DAYS)]
    steps = [
        ["-genkeypair", "-alias", "ca", "-dname", "CN=local_kafka test CA", "-ext", "bc:c",
         *key, "-keystore", "ca.p12"],
        ["-exportcert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-file", "ca.pem"],
        ["-genkeypair", "-alias", "broker", "-dname", "CN=localhost", *key,
         "-keystore", "broker.p12"],
        ["-certreq", "-alias", "broker", "-keystore", "broker.p12", "-file", "broker.csr"],
        ["-gencert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-infile", "broker.csr",
         "-outfile", "broker.pem", "-validity", str(CERT_VALIDITY_DAYS),
         "-ext", f"SAN=dns:localhost,ip:{HOST}", "-ext", "EKU=serverAuth"],
        ["-importcert", "-noprompt", "-alias", "ca", "-keystore", "broker.p12",
         "-file", "ca.pem"],
        ["-importcert", "-alias", "broker", "-keystore", "broker.p12", "-file", "broker.pem"],
    ]  # fmt: skip
    log.info("creating a test CA and the broker's TLS certificate in %s", tls)
    env = {**os.environ, "LOCAL_KAFKA_STOREPASS": password}
    for step in steps:
        cmd = [keytool, *step, *store]
        proc = subprocess.run(
            cmd, cwd=tmp, env=env, capture_output=True, text=True, check=False, timeout=120
        )
        if proc.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            raise LocalKafkaError(
                f"keytool failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                f"{(proc.stdout + proc.stderr).strip()[-2000:]}"
            )
    shutil.rmtree(tls, ignore_errors=True)
    tmp.rename(tls)
    return password


# ------------------------------------------------------------------ processes


def _pid_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is None:
            return True
        del _children[pid]
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_cmdline(pid: int) -> str:
    proc_file = Path(f"/proc/{pid}/cmdline")
    if proc_file.parent.is_dir():
        try:
            return proc_file.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return ""
    proc = subprocess.run(
        ["ps", "-ww", "-o", "command=", "-p", str(pid)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return proc.stdout.strip()


def _broker_pid(state_dir: Path) -> int | None:
    """Return the pid of this state dir's live broker, or None (removing a stale pid file)."""
    pid_file = _pid_file(state_dir)
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    cmdline = _pid_cmdline(pid) if _pid_alive(pid) else ""
    if _MAIN_CLASS in cmdline and str(_server_properties(state_dir)) in cmdline:
        return pid
    log.info("removing stale pid file %s (pid %d is not this broker)", pid_file, pid)
    pid_file.unlink(missing_ok=True)
    return None


@contextlib.contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Serialise start/stop on one state dir across processes."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def find_free_port_pair() -> int:
    """Return a port P such that P and P + 1 are both free on 127.0.0.1.

    Raises:
        LocalKafkaError: If no such pair turns up after many tries.

    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port < 65535 and _port_free(port) and _port_free(port + 1):
            return port
    raise LocalKafkaError("could not find two consecutive free ports on 127.0.0.1")


def _log_tail(state_dir: Path, lines: int = 40) -> str:
    try:
        text = _log_file(state_dir).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no broker log)"
    # Leave out the long "KafkaConfig values:" dump (one tab-indented "key = value" per line).
    kept = [line for line in text.splitlines() if not _CONFIG_DUMP_LINE.match(line)]
    return "\n".join(kept[-lines:])


# ------------------------------------------------------------------ protocol probe


class _Reader:
    """Minimal big-endian reader for Kafka protocol responses."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return int(value)

    def int16(self) -> int:
        return self._take(">h")

    def int32(self) -> int:
        return self._take(">i")

    def string(self) -> str | None:
        length = self.int16()
        if length < 0:
            return None
        value = self.data[self.pos : self.pos + length].decode("utf-8")
        self.pos += length
        return value


def _kafka_request(
    sock: socket.socket, api_key: int, version: int, correlation_id: int, body: bytes
) -> _Reader:
    """Send one request (header v1) and return a reader positioned after the response header."""
    client_id = b"local_kafka"
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", _recv_exactly(sock, 4))[0]
    reader = _Reader(_recv_exactly(sock, size))
    if reader.int32() != correlation_id:
        raise OSError("correlation id mismatch")
    return reader


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks: list[bytes] = []
    while size > 0:
        chunk = sock.recv(min(size, 65536))
        if not chunk:
            raise OSError("connection closed by broker")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def probe(host: str, port: int, timeout_s: float = 3.0) -> bool:
    """Return True when a Kafka broker at host:port serves metadata listing a live broker.

    Sends an ApiVersions (v0) request, then a Metadata request for no topics in
    the highest non-flexible version the broker supports (at most v8), and checks
    that at least one broker is registered (in KRaft, fenced brokers are not listed).
    """
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            reader = _kafka_request(sock, api_key=18, version=0, correlation_id=1, body=b"")
            if reader.int16() != 0:
                return False
            versions = {}
            for _ in range(reader.int32()):
                key, low, high = reader.int16(), reader.int16(), reader.int16()
                versions[key] = (low, high)
            low, high = versions.get(3, (0, -1))
            version = min(high, 8)
            if version < max(low, 1):
                return True  # no non-flexible Metadata version to ask; ApiVersions answered
            body = struct.pack(">i", 0)  # topics: empty array, i.e. none
            if version >= 4:
                body += b"\x00"  # allow_auto_topic_creation
            if version >= 8:
                body += b"\x00\x00"  # include cluster/topic authorized operations
            reader = _kafka_request(sock, api_key=3, version=version, correlation_id=2, body=body)
            if version >= 3:
                reader.int32()  # throttle_time_ms
            return reader.int32() > 0  # number of brokers
    except (OSError, struct.error, UnicodeDecodeError):
        return False


# ------------------------------------------------------------------ public API


def is_running(state_dir: Path | str = DEFAULT_STATE_DIR) -> bool:
    """Return True when a broker process started from ``state_dir`` is alive."""
    return _broker_pid(Path(state_dir).resolve()) is not None


def _accepts(port: int) -> bool:
    """Return True when something accepts TCP connections on ``127.0.0.1:port``."""
    try:
        with socket.create_connection((HOST, port), timeout=2.0):
            return True
    except OSError:
        return False


def _wait_ready(
    state_dir: Path,
    pid: int,
    port: int,
    timeout_s: float,
    child: subprocess.Popen[bytes] | None,
    secured_ports: tuple[int, ...] = (),
) -> None:
    deadline = time.monotonic() + timeout_s
    log_path = _log_file(state_dir)
    started = False
    while True:
        if child is not None and child.poll() is not None:
            raise LocalKafkaError(
                f"the broker exited with code {child.returncode} during startup; "
                f"log tail ({log_path}):\n{_log_tail(state_dir)}"
            )
        if child is None and not _pid_alive(pid):
            raise LocalKafkaError(f"the broker (pid {pid}) died; log tail:\n{_log_tail(state_dir)}")
        if not started:
            with contextlib.suppress(OSError):
                started = STARTED_MARKER in log_path.read_text(encoding="utf-8", errors="replace")
        if started and probe(HOST, port, timeout_s=2.0) and all(map(_accepts, secured_ports)):
            return
        if time.monotonic() >= deadline:
            raise LocalKafkaError(
                f"the broker did not become ready on {HOST}:{port} within {timeout_s:.0f} s; "
                f"log tail ({log_path}):\n{_log_tail(state_dir)}"
            )
        time.sleep(0.25)


def _terminate(pid: int, timeout_s: float, what: str = "broker") -> bool:
    """SIGTERM ``pid``, wait up to ``timeout_s``, then SIGKILL. Return True if it was graceful."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.2)
    log.warning("%s pid %d still alive after %.0f s; sending SIGKILL", what, pid, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):
        if not _pid_alive(pid):
            break
        time.sleep(0.1)
    return False


def start(
    port: int = DEFAULT_PORT,
    state_dir: Path | str = DEFAULT_STATE_DIR,
    timeout_s: float = DEFAULT_START_TIMEOUT_S,
    sasl_port: int | None = None,
    sasl_ssl_port: int | None = None,
    scram_users: Mapping[str, str] | None = None,
) -> str:
    """Start (or reuse) the single-node KRaft broker of ``state_dir`` on ``port``.

    Args:
        port: Client port; the KRaft controller listens on ``port + 1``.
        state_dir: Folder holding jars, configuration, data and logs.
        timeout_s: How long to wait for the broker to become ready.
        sasl_port: Also listen for ``SASL_PLAINTEXT`` (SCRAM-SHA-256/512) clients here.
        sasl_ssl_port: Also listen for ``SASL_SSL`` clients here, with a certificate
            signed by :func:`ca_certificate`.
        scram_users: SCRAM users (name: password) written when storage is formatted;
            default :data:`DEFAULT_SCRAM_USERS` when a SASL port is given.

    Returns:
        The bootstrap servers string of the plain listener, ``127.0.0.1:<port>``.

    Raises:
        LocalKafkaError: On missing prerequisites, busy ports, a running broker or
            formatted data dir set up otherwise, or a broker that dies or does not
            become ready in time (the log tail is included).

    """
    listeners = _client_listeners(port, sasl_port, sasl_ssl_port)
    users = _scram_users(listeners, scram_users)
    secured_ports = tuple(p for name, p in listeners.items() if name != "PLAINTEXT")
    state = Path(state_dir).resolve()
    bootstrap = f"{HOST}:{port}"
    check_pom_version()
    with _locked(state):
        pid = _broker_pid(state)
        if pid is not None:
            running = _configured_listeners(state)
            if any(running.get(name) != p for name, p in listeners.items()):  # extra ones: fine
                raise LocalKafkaError(
                    f"a broker from {state} is already running (pid {pid}) with listeners "
                    f"{_describe(running)}, not {_describe(listeners)}; stop it first or use "
                    "another --state-dir"
                )
            _check_scram_users(state, users)
            _wait_ready(state, pid, port, timeout_s, child=None, secured_ports=secured_ports)
            log.info("reusing running broker (pid %d) at %s", pid, bootstrap)
            return bootstrap

        for busy in (port, port + 1, *secured_ports):
            if not _port_free(busy):
                raise LocalKafkaError(
                    f"port {busy} on {HOST} is already in use by another process; "
                    f"choose other ports (the broker needs {port}, {port + 1} (controller)"
                    + "".join(f", {p}" for p in secured_ports)
                    + ")"
                )
        _check_scram_users(state, users)

        java = _java_executable()
        libs = resolve_jars(state)
        password = _ensure_tls_material(java, state) if "SASL_SSL" in listeners else None
        _data_dir(state).mkdir(parents=True, exist_ok=True)
        _server_properties(state).write_text(
            _server_properties_text(state, listeners, password), encoding="utf-8"
        )
        _server_properties(state).chmod(0o600)  # it may hold the keystore password
        _log4j_config(state).write_text(_log4j_yaml_text(state), encoding="utf-8")
        log_path = _log_file(state)
        if log_path.exists():
            log_path.replace(log_path.with_name(log_path.name + ".1"))
        _format_storage(java, libs, state, users)
        cmd = [
            java, *JVM_HEAP_OPTS, "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={_log4j_config(state)}",
            f"-Dkafka.logs.dir={state}",
            "-cp", f"{libs}/*", _MAIN_CLASS, str(_server_properties(state)),
        ]  # fmt: skip
        began = time.monotonic()
        with log_path.open("ab") as out:
            child = subprocess.Popen(
                cmd, cwd=state, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        _children[child.pid] = child
        _pid_file(state).write_text(f"{child.pid}\n", encoding="ascii")
        log.info(
            "launched Apache Kafka %s (pid %d), waiting for %s", KAFKA_VERSION, child.pid, bootstrap
        )
        try:
            _wait_ready(state, child.pid, port, timeout_s, child=child, secured_ports=secured_ports)
        except BaseException:
            _terminate(child.pid, timeout_s=10.0)
            _pid_file(state).unlink(missing_ok=True)
            raise
        log.info("broker ready at %s after %.1f s", bootstrap, time.monotonic() - began)
        for name, secured in listeners.items():
            if name != "PLAINTEXT":
                log.info(
                    "%s listener at %s:%d (%s; users: %s)",
                    name, HOST, secured, "/".join(SCRAM_MECHANISMS), ", ".join(sorted(users)),
                )  # fmt: skip
        if "SASL_SSL" in listeners:
            log.info("clients of the SASL_SSL listener trust %s", ca_certificate(state))
        return bootstrap


def stop(
    state_dir: Path | str = DEFAULT_STATE_DIR,
    wipe: bool = False,
    timeout_s: float = STOP_TIMEOUT_S,
) -> bool:
    """Stop the broker of ``state_dir`` (SIGTERM, then SIGKILL after ``timeout_s``).

    Args:
        state_dir: The folder given to :func:`start`.
        wipe: Also delete the data dir (topics and KRaft metadata); the next start
            formats a new cluster.
        timeout_s: Grace period for the controlled shutdown.

    Returns:
        True if a running broker was stopped, False if none was running.

    """
    state = Path(state_dir).resolve()
    if not state.is_dir():
        return False
    with _locked(state):
        pid = _broker_pid(state)
        if pid is not None:
            log.info("stopping broker pid %d", pid)
            if _terminate(pid, timeout_s):
                log.info("broker stopped")
            _children.pop(pid, None)
        _pid_file(state).unlink(missing_ok=True)
        if wipe:
            log.info("wiping %s", _data_dir(state))
            shutil.rmtree(_data_dir(state), ignore_errors=True)
            _scram_record(state).unlink(missing_ok=True)
    return pid is not None


# ------------------------------------------------------------------ CLI


def _scram_user_arg(value: str) -> tuple[str, str]:
    name, sep, password = value.partition(":")
    if not (sep and name and password):
        raise argparse.ArgumentTypeError(f"expected NAME:PASSWORD, got {value!r}")
    return name, password


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="local_kafka.py",
        description=f"Run a single-node Apache Kafka {KAFKA_VERSION} broker (KRaft), no Docker.",
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="jars, config, data and logs (default: %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", parents=[common], help="start or reuse the broker")
    p_start.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="client port (default: %(default)s)"
    )
    p_start.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_START_TIMEOUT_S,
        help="seconds to wait for readiness (default: %(default)s)",
    )
    p_start.add_argument(
        "--sasl-port", type=int, help="also a SASL_PLAINTEXT listener (SCRAM) on this port"
    )
    p_start.add_argument(
        "--sasl-ssl-port",
        type=int,
        help="also a SASL_SSL listener (SCRAM over TLS; clients trust <state>/tls/ca.pem)",
    )
    p_start.add_argument(
        "--scram-user",
        action="append",
        type=_scram_user_arg,
        metavar="NAME:PASSWORD",
        help="SCRAM-SHA-256/512 user created when storage is formatted (repeatable; default "
        f"with a SASL port: {', '.join(':'.join(u) for u in DEFAULT_SCRAM_USERS.items())})",
    )
    p_stop = sub.add_parser("stop", parents=[common], help="stop the broker")
    p_stop.add_argument("--wipe", action="store_true", help="also delete the data dir")
    sub.add_parser("status", parents=[common], help="print running/stopped (exit 0/1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the command line interface and return the process exit code."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="local_kafka: %(message)s", stream=sys.stderr)
    try:
        if args.command == "start":
            bootstrap = start(
                port=args.port,
                state_dir=args.state_dir,
                timeout_s=args.timeout,
                sasl_port=args.sasl_port,
                sasl_ssl_port=args.sasl_ssl_port,
                scram_users=dict(args.scram_user) if args.scram_user else None,
            )
            print(bootstrap, flush=True)
            return 0
        if args.command == "stop":
            if not stop(state_dir=args.state_dir, wipe=args.wipe):
                log.info("no broker was running")
            return 0
        state = Path(args.state_dir).resolve()
        pid = _broker_pid(state)
        if pid is None:
            print("stopped")
            return 1
        listeners = _configured_listeners(state)
        port = listeners.get("PLAINTEXT")
        answering = port is not None and probe(HOST, port)
        secured = "".join(
            f" {name.lower()}={HOST}:{p}" for name, p in listeners.items() if name != "PLAINTEXT"
        )
        print(
            f"running pid={pid} bootstrap={HOST}:{port}{secured}"
            + ("" if answering else " (not answering)")
        )
        return 0
    except LocalKafkaError as exc:
        print(f"local_kafka: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
