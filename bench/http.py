"""HTTP stage: ``python -m api`` under 1, 8 and 64 concurrent clients, batching on and off.

Each configuration runs ``python -m api`` as its own process (``--max-batch-size 64`` =
batching on, ``1`` = off) on localhost, and ``wrk`` (C, keep-alive connections, a Lua script
cycling through single AG News snippets) posts to ``/v1/classify`` back to back for a fixed
time: throughput and p50/p99 latency. (A Python client is not used for this: ``httpx``'s
async pool served 1,116 req/s of ``/healthz`` at 8 connections but 158 at 64 here.) Then a
phase paced at 50 % of each mode's saturated rate (wrk, 32 connections with a pause between
answer and next request, the pause shortened by the latency a calibration run measured at
that pace) measures p99 at half load. Both modes run in the same invocation,
one after the other, on the same texts, so their ratio is measured side by side.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
MODES = {"batching": 64, "no batching": 1}
#: Connections of the half-load phase.
PACED_CLIENTS = 32


class HttpBenchError(Exception):
    """The API under test did not start or answered errors."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(bundle: Path, max_batch_size: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "api", "--bundle", str(bundle), "--port", str(port),
        "--max-batch-size", str(max_batch_size), "--reload-interval-s", "0",
        "--log-level", "WARNING",
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=out, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise HttpBenchError(f"python -m api did not start: {log.read_text()[-2000:]}")


#: wrk's Lua hooks: POST one JSON body per line of $BODIES, round robin; print a summary.
WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies, i = {}, 0
for line in io.lines(os.getenv("BODIES")) do bodies[#bodies + 1] = line end
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i % #bodies) + 1])
end
local think = tonumber(os.getenv("DELAY_MS") or "0")
delay = function() return think end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %.3f %.3f\\n", summary.requests, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def _closed_loop(
    url: str, bodies: Path, script: Path, clients: int, seconds: float, delay_ms: float = 0.0
) -> dict[str, Any]:
    """``clients`` keep-alive connections posting for ``seconds`` with wrk.

    Each connection waits ``delay_ms`` between an answer and its next request (0: back to
    back, the saturated case).
    """
    threads = min(2, clients)
    cmd = [
        "wrk", f"-t{threads}", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "30s",
        "-s", str(script), f"{url}/v1/classify",
    ]  # fmt: skip
    out = subprocess.run(
        cmd, capture_output=True, text=True,
        env={**os.environ, "BODIES": str(bodies), "DELAY_MS": str(round(delay_ms))},
        timeout=seconds + 60, check=False,
    )  # fmt: skip
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise HttpBenchError(f"wrk gave no result: {out.stdout[-1000:]} {out.stderr[-1000:]}")
    requests, duration_us, errors, p50, p99 = line.split()[1:]
    elapsed = int(duration_us) / 1e6
    return {
        "requests": int(requests),
        "errors": int(errors),
        "seconds": round(elapsed, 2),
        "requests_per_s": round(int(requests) / elapsed, 1),
        "latency_ms": {"p50": round(float(p50), 2), "p99": round(float(p99), 2)},
    }


def run(
    bundle: Path,
    texts: Sequence[str],
    clients: Sequence[int] = (1, 8, 64),
    seconds: float = 8.0,
    paced_seconds: float = 10.0,
    work_dir: Path = REPO / "artifacts" / "bench",
) -> dict[str, Any]:
    """Measure both modes; returns ``{mode: {"clients": {n: summary}, "paced_50": summary}}``.

    Raises:
        HttpBenchError: ``wrk`` is missing, or the API did not start or answer.
    """
    if shutil.which("wrk") is None:
        raise HttpBenchError("the HTTP stage needs wrk (apt-get install wrk); or pass --no-http")
    work_dir.mkdir(parents=True, exist_ok=True)
    bodies = work_dir / "http-bodies.jsonl"
    bodies.write_text(
        "".join(json.dumps({"id": f"m{i}", "text": t}) + "\n" for i, t in enumerate(texts))
    )
    script = work_dir / "http-post.lua"
    script.write_text(WRK_SCRIPT)
    results: dict[str, Any] = {}
    for mode, max_batch_size in MODES.items():
        proc, url = _start(bundle, max_batch_size, work_dir / "logs" / f"api-{max_batch_size}.log")
        try:
            _closed_loop(url, bodies, script, max(clients), 2.0)  # warm-up
            per_clients = {str(n): _closed_loop(url, bodies, script, n, seconds) for n in clients}
            saturated = max(r["requests_per_s"] for r in per_clients.values())
            # Half load: PACED_CLIENTS connections, each pausing between an answer and its
            # next request so that together they offer 50 % of this mode's saturated rate
            # (wrk's delay()). A connection's cycle is pause + latency, so a short calibration
            # run measures the latency at that pace and the pause is shortened by it.
            cycle_ms = 1000 * PACED_CLIENTS / (0.5 * saturated)
            calibration = _closed_loop(url, bodies, script, PACED_CLIENTS, 3.0, cycle_ms)
            delay_ms = max(0.0, cycle_ms - calibration["latency_ms"]["p50"])
            paced = _closed_loop(url, bodies, script, PACED_CLIENTS, paced_seconds, delay_ms)
            paced["offered_per_s"] = round(0.5 * saturated, 1)
        finally:
            proc.terminate()
            proc.wait(30)
        results[mode] = {
            "max_batch_size": max_batch_size,
            "clients": per_clients,
            "saturated_per_s": saturated,
            "paced_50": paced,
        }
    top = str(max(clients))
    on = results["batching"]["clients"][top]["requests_per_s"]
    off = results["no batching"]["clients"][top]["requests_per_s"]
    results["speedup_at_max_clients"] = round(on / off, 2) if off else None
    return results
