"""Fixtures for integration tests that talk to a real Apache Kafka broker (and Schema Registry).

``kafka_bootstrap`` picks the broker, in this order:

1. ``KAFKA_BOOTSTRAP_SERVERS`` from the environment, used as is (nothing is started);
2. a throw-away ``apache/kafka`` container via testcontainers, when a Docker engine answers;
3. a local single-node KRaft broker run from the official jars by ``deploy/local_kafka.py``
   (needs Java 17+ and Maven), on free ports with its state under pytest's temporary
   directory, so a developer's own ``.kafka`` broker and data are never touched.

``schema_registry`` is a Confluent-compatible Schema Registry: ``SCHEMA_REGISTRY_URL`` from the
environment, used as is, else Apicurio Registry run from its Maven Central distribution by
``deploy/local_registry.py`` (Java 17+, Maven the first time) on a free port, with its database
under pytest's temporary directory. The local one can be stopped and started again (an outage)
and keeps its schemas and ids.

Every test collected under ``tests/integration`` is marked ``integration``.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest
from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports NewTopic without listing it in __all__, which
# mypy --strict rejects; the class itself lives in the C extension module.
from confluent_kafka.cimpl import NewTopic

from deploy import local_kafka, local_registry
from tests.net import free_port

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

KAFKA_IMAGE = "apache/kafka:4.1.1"
INTEGRATION_DIR = Path(__file__).resolve().parent
LOCAL_BROKER_START_TIMEOUT_S = 120.0
CONTAINER_START_TIMEOUT_S = 180
LOCAL_REGISTRY_START_TIMEOUT_S = 120.0
SCHEMA_REGISTRY_ENV = "SCHEMA_REGISTRY_URL"
TOPIC_READY_TIMEOUT_S = 30.0

log = logging.getLogger(__name__)


class TopicFactory(Protocol):
    """Signature of the ``new_topic`` fixture."""

    def __call__(
        self, name_prefix: str, partitions: int = 3, config: dict[str, str] | None = None
    ) -> str: ...


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected from this folder as ``integration``."""
    for item in items:
        if INTEGRATION_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


# ----------------------------------------------------------------------------- broker choice


def _announce(config: pytest.Config, message: str, tag: str = "kafka") -> None:
    log.info(message)
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None:
        return
    if capture is None:
        reporter.write_line(f"[{tag}] {message}")
        return
    with capture.global_and_fixture_disabled():  # show it even when output is captured
        reporter.write_line(f"[{tag}] {message}")


def _docker_answers() -> bool:
    """Return True when the Docker engine testcontainers would use answers a ping."""
    try:
        from testcontainers.core.docker_client import DockerClient

        return bool(DockerClient(timeout=3).client.ping())
    except Exception:  # no docker package, no engine, no permission, ...
        return False


def _start_kafka_container() -> tuple[DockerContainer, str]:
    """Start ``apache/kafka`` in KRaft mode; return the container and bootstrap servers.

    testcontainers' ``KafkaContainer`` drives Confluent's ``cp-kafka`` start scripts
    (``/etc/confluent/docker/...``), which the Apache image does not have, so this
    configures the Apache image with its documented ``KAFKA_*`` environment variables
    instead. The advertised listener must name the host-side mapped port, known only
    once the container runs, so the container first waits for a start script that
    exports it and then runs the image's own entry point.
    """
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    cluster_id = "-"
    while cluster_id.startswith("-"):  # a leading "-" reads as an option to kafka-storage
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    env = {
        "CLUSTER_ID": cluster_id,
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,BROKER://:9093,CONTROLLER://:9094",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
            "PLAINTEXT:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT"
        ),
        "KAFKA_INTER_BROKER_LISTENER_NAME": "BROKER",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9094",
        "KAFKA_NUM_PARTITIONS": "3",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
    script, ready = "/tmp/tc-start.sh", "/tmp/tc-start.ready"
    container = (
        DockerContainer(KAFKA_IMAGE)
        .with_exposed_ports(9092)
        .with_envs(**env)
        .with_command(["sh", "-c", f"while [ ! -f {ready} ]; do sleep 0.1; done; exec sh {script}"])
    )
    container.start()
    try:
        bootstrap = f"{container.get_container_host_ip()}:{container.get_exposed_port(9092)}"
        start_script = (
            f"export KAFKA_ADVERTISED_LISTENERS='PLAINTEXT://{bootstrap},BROKER://localhost:9093'\n"
            "exec /etc/kafka/docker/run\n"
        )
        container.copy_into_container(start_script.encode(), script)
        container.copy_into_container(b"", ready)  # only now is the script complete
        wait = LogMessageWaitStrategy(re.compile(r"Kafka Server started"))
        wait.with_startup_timeout(CONTAINER_START_TIMEOUT_S).wait_until_ready(container)
    except BaseException:
        container.stop()
        raise
    return container, bootstrap


@pytest.fixture(scope="session")
def kafka_bootstrap(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Bootstrap servers of a running Kafka broker for the whole test session."""
    config = request.config
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if configured:
        _announce(config, f"using KAFKA_BOOTSTRAP_SERVERS={configured} (nothing started)")
        yield configured
        return

    container: DockerContainer | None = None
    why = "no Docker engine answered"
    if _docker_answers():
        _announce(config, f"Docker engine found: starting {KAFKA_IMAGE} with testcontainers")
        try:
            container, bootstrap = _start_kafka_container()
        except Exception as exc:  # e.g. the image cannot be pulled while offline
            why = f"the container did not start ({exc!r})"
    if container is not None:
        _announce(config, f"container broker ready at {bootstrap}")
        try:
            yield bootstrap
        finally:
            container.stop()
        return

    state_dir = tmp_path_factory.mktemp("local-kafka")
    port = int(local_kafka.find_free_port_pair())
    _announce(
        config,
        f"{why}: starting a local Apache Kafka {local_kafka.KAFKA_VERSION} broker from "
        f"the jars on 127.0.0.1:{port} (state in {state_dir})",
    )
    began = time.monotonic()
    try:
        bootstrap = str(
            local_kafka.start(
                port=port, state_dir=state_dir, timeout_s=LOCAL_BROKER_START_TIMEOUT_S
            )
        )
    except local_kafka.LocalKafkaError as exc:
        pytest.fail(f"could not start a local Kafka broker: {exc}", pytrace=False)
    _announce(config, f"local broker ready at {bootstrap} in {time.monotonic() - began:.1f} s")
    try:
        yield bootstrap
    finally:
        local_kafka.stop(state_dir=state_dir, wipe=True)


# ----------------------------------------------------------------------------- schema registry


class RegistryHandle:
    """The session's Confluent-compatible Schema Registry.

    ``url`` is the base URL of its Confluent API (``.../apis/ccompat/v7`` for the local one), what
    ``SchemaRegistryClient({"url": url})`` takes. For outage tests, ``stop()`` stops the local
    registry and ``start()`` starts it again on the same port with the same storage, so the
    schemas and ids registered before still resolve. With ``SCHEMA_REGISTRY_URL`` given, the
    registry is not ours: ``stop()`` and ``start()`` skip the calling test.
    """

    def __init__(self, url: str, state_dir: Path | None = None, port: int | None = None) -> None:
        self.url = url
        self._local = (state_dir, port) if state_dir is not None and port is not None else None

    @property
    def local(self) -> bool:
        """True when the fixture started this registry (and can stop and start it)."""
        return self._local is not None

    def _ours(self) -> tuple[Path, int]:
        if self._local is None:
            pytest.skip(
                f"cannot stop or start the schema registry given by {SCHEMA_REGISTRY_ENV}="
                f"{self.url}; unset {SCHEMA_REGISTRY_ENV} to test against a local one"
            )
        return self._local

    def require_local(self) -> None:
        """Skip the calling test unless the fixture started this registry (so owns its outages)."""
        self._ours()

    def is_running(self) -> bool:
        """True for a given registry; for the local one, whether its process is alive."""
        return self._local is None or local_registry.is_running(self._local[0])

    def stop(self) -> None:
        """Stop the local registry (graceful; nothing stored is lost). Skips for a given one."""
        state_dir, _ = self._ours()
        local_registry.stop(state_dir=state_dir)

    def start(self) -> None:
        """Start the local registry again (same port, same storage) and wait until it is ready.

        Does nothing when it runs; skips the test for a given registry.
        """
        state_dir, port = self._ours()
        local_registry.start(
            port=port, state_dir=state_dir, timeout_s=LOCAL_REGISTRY_START_TIMEOUT_S
        )


@pytest.fixture(scope="session")
def schema_registry(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RegistryHandle]:
    """A Confluent-compatible Schema Registry for the whole test session (see the module doc)."""
    config = request.config
    configured = os.environ.get(SCHEMA_REGISTRY_ENV, "").strip().rstrip("/")
    if configured:
        _announce(config, f"using {SCHEMA_REGISTRY_ENV}={configured} (nothing started)", "registry")
        yield RegistryHandle(configured)
        return

    state_dir = tmp_path_factory.mktemp("local-registry")
    port = free_port()
    _announce(
        config,
        f"starting a local Apicurio Registry {local_registry.APICURIO_VERSION} on "
        f"127.0.0.1:{port} (state in {state_dir})",
        "registry",
    )
    began = time.monotonic()
    try:
        url = local_registry.start(
            port=port, state_dir=state_dir, timeout_s=LOCAL_REGISTRY_START_TIMEOUT_S
        )
    except local_registry.LocalRegistryError as exc:
        pytest.fail(f"could not start a local schema registry: {exc}", pytrace=False)
    _announce(
        config, f"local registry ready at {url} in {time.monotonic() - began:.1f} s", "registry"
    )
    try:
        yield RegistryHandle(url, state_dir=state_dir, port=port)
    finally:
        local_registry.stop(state_dir=state_dir, wipe=True)


@pytest.fixture
def schema_registry_url(schema_registry: RegistryHandle) -> str:
    """The session registry's Confluent API URL, restarted first if an earlier test left it down."""
    if not schema_registry.is_running():
        schema_registry.start()
    return schema_registry.url


# ----------------------------------------------------------------------------- helpers


@pytest.fixture(scope="session")
def admin_client(kafka_bootstrap: str) -> AdminClient:
    """A confluent-kafka ``AdminClient`` connected to the session's broker."""
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


def _wait_for_topic(admin: AdminClient, name: str, partitions: int) -> None:
    """Wait until metadata shows ``name`` with all partitions led by a broker."""
    deadline = time.monotonic() + TOPIC_READY_TIMEOUT_S
    while True:
        metadata = admin.list_topics(topic=name, timeout=5)
        topic = metadata.topics.get(name)
        if (
            topic is not None
            and topic.error is None
            and len(topic.partitions) == partitions
            and all(p.leader >= 0 for p in topic.partitions.values())
        ):
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topic {name} not ready after {TOPIC_READY_TIMEOUT_S:.0f} s")
        time.sleep(0.2)


@pytest.fixture
def new_topic(admin_client: AdminClient) -> Iterator[TopicFactory]:
    """Factory creating uniquely named topics, deleted again after the test.

    ``new_topic("orders")`` creates e.g. ``orders-3f2a9c1b7d4e`` with 3 partitions
    (replication factor 1) and the given topic ``config``, waits until it is usable and
    returns its name.
    """
    created: list[str] = []

    def factory(name_prefix: str, partitions: int = 3, config: dict[str, str] | None = None) -> str:
        prefix = re.sub(r"[^A-Za-z0-9._-]", "-", name_prefix)[:200] or "topic"
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
        futures = admin_client.create_topics(
            [topic],
            operation_timeout=TOPIC_READY_TIMEOUT_S,
        )
        futures[name].result(timeout=TOPIC_READY_TIMEOUT_S)
        created.append(name)
        _wait_for_topic(admin_client, name, partitions)
        return name

    yield factory

    if created:
        futures = admin_client.delete_topics(created, operation_timeout=TOPIC_READY_TIMEOUT_S)
        for name, future in futures.items():
            try:
                future.result(timeout=TOPIC_READY_TIMEOUT_S)
            except Exception as exc:  # teardown must not mask the test's own outcome
                log.warning("could not delete topic %s: %s", name, exc)


@pytest.fixture(autouse=True)
def _reap_consumers() -> Iterator[None]:
    """Kill consumer processes a test left running (e.g. after a failed assertion)."""
    from tests.integration.streaming import STARTED

    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
