"""``python -m consumer`` as a child process: the demo's and the benchmark's one way to run it.

The service writes its JSON log to stderr; here it goes to a file, which is also how the
caller learns that the consumer owns its partitions (a ``partitions_assigned`` line; with
``--processes N``, the supervisor's ``workers_ready`` line: every worker owns partitions).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


class ConsumerStartError(Exception):
    """The consumer exited, or did not get its partitions in time; the message has its log."""


class ConsumerProcess:
    """``python -m consumer`` started in the repository root, its stderr (JSON log) in a file.

    Args:
        args: Command-line flags of ``python -m consumer``.
        log_path: File receiving the consumer's stderr (truncated first).
        env: Environment variables added to this process's own (which win over the default
            ``TF_CPP_MIN_LOG_LEVEL=2`` that keeps TensorFlow's C++ lines out of the log).
        ready_event: The log event :meth:`wait_assigned` waits for; default
            ``partitions_assigned``, or ``workers_ready`` when ``args`` has ``--processes``.
        command: The program run with ``args`` instead of ``python -m consumer`` (the
            benchmark's peer frameworks, ``[python, "-m", "bench.peers.quix_app"]``).
    """

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        ready_event: str | None = None,
        command: Sequence[str] | None = None,
    ) -> None:
        self.log_path = log_path
        supervised = "--processes" in args and args[list(args).index("--processes") + 1] != "1"
        self.ready_event = ready_event or ("workers_ready" if supervised else "partitions_assigned")
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [*(command or (sys.executable, "-m", "consumer")), *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env={"TF_CPP_MIN_LOG_LEVEL": "2", **os.environ, **(env or {})},
        )

    @property
    def pid(self) -> int:
        """Process id."""
        return self.proc.pid

    def wait_assigned(self, timeout_s: float) -> None:
        """Block until the log shows :attr:`ready_event` (the consumer owns partitions).

        Raises:
            ConsumerStartError: the process exited or ``timeout_s`` (s) passed; the message
                ends with the log's tail.
        """
        deadline = time.monotonic() + timeout_s
        marker = f'"{self.ready_event}"'.encode()
        while time.monotonic() < deadline:
            if marker in self.log_path.read_bytes():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise ConsumerStartError(
            f"consumer did not get its partitions (see {self.log_path}); log tail:\n"
            f"{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the consumer's log."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def events(self) -> list[dict[str, Any]]:
        """The JSON lines of the log so far (other lines skipped)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return out

    def memory_kb(self) -> dict[str, int]:
        """``VmHWM`` (peak RSS) and ``VmRSS`` in KiB from ``/proc/<pid>/status`` ({} if gone).

        With ``--processes N``, the sums over the supervisor and its workers (``processes``
        says how many were counted).
        """
        out: dict[str, int] = {}
        pids = [self.pid, *_children(self.pid)]
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in ("VmHWM", "VmRSS"):
                        out[key] = out.get(key, 0) + int(value.split()[0])
            except OSError:
                continue
        if len(pids) > 1:
            out["processes"] = len(pids)
        return out

    def kill(self) -> int:
        """SIGKILL (no graceful stop: nothing in flight is committed); returns the exit code."""
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        self._log.close()
        return code

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait for the graceful exit (finish batches, flush, commit, close).

        After ``timeout_s`` (s) the process is killed (SIGKILL).

        Returns:
            The exit code (negative: killed by that signal).
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self._log.close()
        return code


def _children(pid: int) -> list[int]:
    """Process ids of ``pid``'s children (Linux ``/proc``; [] elsewhere or when gone)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]
