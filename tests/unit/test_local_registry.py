"""deploy/local_registry.py without a registry: arguments, pins, refusals and error messages.

No network and no JVM: processes are stand-ins (``python -c``), ports are bound locally.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import local_registry as reg

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that a listening socket holds for the test."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.fixture
def no_m2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No distribution in Maven's cache (a fresh machine)."""
    monkeypatch.setattr(reg, "m2_archive", lambda: tmp_path / "m2" / reg.ARCHIVE_NAME)


def _empty_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    return empty


# ----------------------------------------------------------------------------- arguments


def test_start_defaults() -> None:
    args = reg._parse_args(["start"])
    assert args.command == "start"
    assert args.port == 8081
    assert args.state_dir == reg.DEFAULT_STATE_DIR
    assert args.state_dir == REPO / ".registry"
    assert args.timeout == 90.0


def test_start_options() -> None:
    args = reg._parse_args(["start", "--port", "18081", "--state-dir", "/x/y", "--timeout", "5"])
    assert (args.port, args.state_dir, args.timeout) == (18081, Path("/x/y"), 5.0)


def test_stop_and_status() -> None:
    assert reg._parse_args(["stop"]).wipe is False
    assert reg._parse_args(["stop", "--wipe", "--state-dir", "s"]).wipe is True
    assert reg._parse_args(["status"]).command == "status"


@pytest.mark.parametrize("argv", [[], ["restart"], ["start", "--port", "x"], ["status", "--wipe"]])
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        reg._parse_args(argv)
    assert exit_info.value.code == 2
    assert "usage: local_registry.py" in capsys.readouterr().err


# ----------------------------------------------------------------------------- URLs and config


def test_url_is_the_confluent_api_base() -> None:
    assert reg.registry_url(8081) == "http://127.0.0.1:8081/apis/ccompat/v7"
    assert reg.registry_url(18081, host="localhost") == "http://localhost:18081/apis/ccompat/v7"


def test_storage_is_an_h2_file_under_the_state_dir(tmp_path: Path) -> None:
    url = reg.datasource_url(tmp_path)
    assert url == f"jdbc:h2:file:{tmp_path.as_posix()}/data/registry;WRITE_DELAY=0"


def test_a_state_dir_with_a_semicolon_is_refused(tmp_path: Path) -> None:
    with pytest.raises(reg.LocalRegistryError, match="must not contain ';'"):
        reg.datasource_url(tmp_path / "a;b")


def test_java_command(tmp_path: Path) -> None:
    cmd = reg.java_command("/usr/bin/java", tmp_path, 18081)
    assert cmd[0] == "/usr/bin/java"
    assert "-Xmx384m" in cmd
    assert "-Dquarkus.http.host=127.0.0.1" in cmd
    assert "-Dapicurio.storage.kind=sql" in cmd
    assert "-Dapicurio.storage.sql.kind=h2" in cmd
    assert f"-Dapicurio.datasource.url={reg.datasource_url(tmp_path)}" in cmd
    assert cmd[-2:] == ["-jar", str(tmp_path / f"app-{reg.APICURIO_VERSION}" / reg.RUNNER_JAR)]
    # status and the reuse check read the port back from the command line
    match = reg._PORT_ARG.search(" ".join(cmd))
    assert match is not None
    assert int(match.group(1)) == 18081


def test_docker_compose_runs_the_same_version() -> None:
    compose = (REPO / "docker-compose.yml").read_text(encoding="utf-8")
    assert f"image: apicurio/apicurio-registry:{reg.APICURIO_VERSION}\n" in compose


# ----------------------------------------------------------------------------- checksum


def test_a_corrupt_archive_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / reg.ARCHIVE_NAME
    archive.write_bytes(b"not the distribution")
    actual = hashlib.sha256(b"not the distribution").hexdigest()
    with pytest.raises(reg.LocalRegistryError) as failure:
        reg.verify_archive(archive)
    message = str(failure.value)
    assert f"refusing {archive}" in message
    assert actual in message
    assert reg.ARCHIVE_SHA256 in message
    assert "delete it" in message


def test_the_pinned_checksum_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / reg.ARCHIVE_NAME
    archive.write_bytes(b"pinned")
    monkeypatch.setattr(reg, "ARCHIVE_SHA256", hashlib.sha256(b"pinned").hexdigest())
    reg.verify_archive(archive)


def test_a_corrupt_cached_archive_is_never_unpacked(tmp_path: Path, no_m2: None) -> None:
    (tmp_path / reg.ARCHIVE_NAME).write_bytes(b"\x1f\x8b truncated")
    with pytest.raises(reg.LocalRegistryError, match="refusing"):
        reg.resolve_app(tmp_path)
    assert not (tmp_path / f"app-{reg.APICURIO_VERSION}").exists()


def _tarball(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_verified_archive_is_unpacked_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_m2: None
) -> None:
    archive = tmp_path / reg.ARCHIVE_NAME
    _tarball(archive, {reg.RUNNER_JAR: b"jar", "lib/a.jar": b"a"})
    monkeypatch.setattr(reg, "ARCHIVE_SHA256", reg.sha256_of(archive))
    jar = reg.resolve_app(tmp_path)
    assert jar == tmp_path / f"app-{reg.APICURIO_VERSION}" / reg.RUNNER_JAR
    assert jar.read_bytes() == b"jar"
    archive.unlink()  # the second call neither needs nor looks for the archive
    assert reg.resolve_app(tmp_path) == jar


@pytest.mark.parametrize("data_filter", [True, False], ids=["tarfile-filter", "own-check"])
def test_an_archive_escaping_its_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data_filter: bool
) -> None:
    if not data_filter:  # Python before 3.11.4
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tmp_path / "evil.tar.gz"
    _tarball(archive, {"../escaped": b"x"})
    with pytest.raises(reg.LocalRegistryError, match=re.escape(str(archive))):
        reg._unpack(archive, tmp_path / "out")
    assert not (tmp_path / "escaped").exists()


# ----------------------------------------------------------------------------- refusals


def test_a_busy_port_is_refused_before_anything_is_fetched(
    tmp_path: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fetch(_: Path) -> Path:
        raise AssertionError("resolve_app must not run")

    monkeypatch.setattr(reg, "resolve_app", no_fetch)
    with pytest.raises(reg.LocalRegistryError, match=f"port {busy_port} on 127.0.0.1 is already"):
        reg.start(port=busy_port, state_dir=tmp_path)


@pytest.mark.parametrize("port", [0, 65536])
def test_a_port_out_of_range_is_refused(tmp_path: Path, port: int) -> None:
    with pytest.raises(reg.LocalRegistryError, match=r"port must be in 1\.\.65535"):
        reg.start(port=port, state_dir=tmp_path)


def test_no_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _empty_path(tmp_path, monkeypatch)
    with pytest.raises(reg.LocalRegistryError, match="`java` was not found on PATH"):
        reg._java()


def test_too_old_a_java(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java_home = tmp_path / "jdk11"
    (java_home / "bin").mkdir(parents=True)
    java = java_home / "bin" / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.22\" 2024-01-16' >&2\n")
    java.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(java_home))
    with pytest.raises(reg.LocalRegistryError) as failure:
        reg._java()
    assert f"Java 11; Apicurio Registry {reg.APICURIO_VERSION} needs Java 17+" in str(failure.value)


def test_no_maven_for_the_first_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_m2: None
) -> None:
    _empty_path(tmp_path, monkeypatch)
    with pytest.raises(reg.LocalRegistryError) as failure:
        reg.resolve_app(tmp_path / "state")
    message = str(failure.value)
    assert "`mvn` was not found on PATH" in message
    assert f"Apicurio Registry {reg.APICURIO_VERSION}" in message


def _stand_in(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_not_ready_in_time_shows_the_log_tail(tmp_path: Path) -> None:
    (tmp_path / "registry.log").write_text("first line\nQuarkus said: something went wrong\n")
    with socket.socket() as sock:  # bound, never listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        child = _stand_in("import time; time.sleep(60)")
        try:
            with pytest.raises(reg.LocalRegistryError) as failure:
                reg._wait_ready(tmp_path, child.pid, port, timeout_s=0.3, child=child)
        finally:
            child.kill()
            child.wait()
    message = str(failure.value)
    assert f"did not become ready at http://127.0.0.1:{port}/apis/ccompat/v7 within 0 s" in message
    assert "Quarkus said: something went wrong" in message


def test_a_registry_exiting_during_startup_is_reported(tmp_path: Path) -> None:
    (tmp_path / "registry.log").write_text("Port 8081 seems to be in use by another process\n")
    child = _stand_in("raise SystemExit(3)")
    child.wait()
    with pytest.raises(reg.LocalRegistryError) as failure:
        reg._wait_ready(tmp_path, child.pid, 1, timeout_s=10, child=child)
    assert "exited with code 3 during startup" in str(failure.value)
    assert "seems to be in use" in str(failure.value)


def test_a_stale_pid_file_is_not_a_running_registry(tmp_path: Path) -> None:
    (tmp_path / "registry.pid").write_text(f"{os.getpid()}\n")  # alive, but not a registry
    assert not reg.is_running(tmp_path)
    assert not (tmp_path / "registry.pid").exists()
    assert reg.stop(state_dir=tmp_path) is False


# ----------------------------------------------------------------------------- command line


def test_status_of_a_stopped_registry(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert reg.main(["status", "--state-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().out == "stopped\n"


def test_start_errors_go_to_stderr_with_exit_1(
    tmp_path: Path, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["start", "--port", str(busy_port), "--state-dir", str(tmp_path)]
    assert reg.main(argv) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert re.match(rf"local_registry: error: port {busy_port} on 127\.0\.0\.1 is already", err)


def test_runs_as_a_script_from_anywhere(tmp_path: Path) -> None:
    """``python deploy/local_registry.py`` (what make and CI run) imports local_kafka too."""
    script = REPO / "deploy" / "local_registry.py"
    proc = subprocess.run(
        [sys.executable, str(script), "status", "--state-dir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (1, "stopped\n"), proc.stderr
