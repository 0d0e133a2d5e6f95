"""The peers table (markdown) from :func:`bench.peers.harness.run`'s results."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bench.peers.harness import BUILD_HINT, PEERS


def _n(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _p50_p99(p: Mapping[str, float] | None) -> str:
    return f"{_n(p.get('p50'))} / {_n(p.get('p99'))}" if p else "-"


def best_peer_rate(runs: Mapping[str, Mapping[str, Any]]) -> float | None:
    """Highest saturated msgs/s of a peer row with Keras inference (the default peers)."""
    rates = [
        r["saturation"]["msgs_per_s"]
        for name, r in runs.items()
        if name in PEERS and "saturation" in r
    ]
    return max(rates) if rates else None


def markdown(peers: Mapping[str, Any]) -> list[str]:
    """One table, rows = systems, both streams side by side, then notes (lines, no newlines).

    Columns per stream: saturated throughput (msgs/s), p50 / p99 latency at saturation and at
    ``paced_load`` x the system's own saturated rate (ms), peak RSS (MiB), CPU seconds per
    1,000 messages; then agreement with the project's labels, and throughput / best peer's.
    """
    runs: Mapping[str, Mapping[str, Any]] = peers.get("runs", {})
    streams = list(runs)
    systems: list[str] = []
    for per_system in runs.values():
        systems += [s for s in per_system if s not in systems]
    load = round(100 * float(peers.get("plan", {}).get("paced_load", 0.5)))
    lines = ["### Peer frameworks on the same broker, bundle and streams", ""]
    if peers.get("missing"):
        lines += [f"Peers not run: {peers['missing']}", ""]
    if not systems:
        return [*lines, f"No system ran. Build the peers' environment with `{BUILD_HINT}`."]
    header = ["system"]
    for s in streams:
        header += [
            f"{s}: msgs/s (saturated)",
            f"{s}: p50 / p99 ms at saturation",
            f"{s}: p50 / p99 ms at {load} %",
            f"{s}: peak RSS MiB",
            f"{s}: CPU s / 1,000 msgs",
        ]
    header += [
        "agreement (" + " · ".join(streams) + ")",
        "x best peer (" + " · ".join(streams) + ")",
    ]
    lines += ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    best = {s: best_peer_rate(runs[s]) for s in streams}
    for name in systems:
        cells = [name]
        agreement, ratio = [], []
        for s in streams:
            r = runs[s].get(name, {})
            sat = r.get("saturation", {})
            cells += [
                _n(sat.get("msgs_per_s")),
                _p50_p99(sat.get("e2e_ms")),
                _p50_p99(r.get("paced", {}).get("e2e_ms")),
                _n(r["rss_kib"] / 1024) if "rss_kib" in r else "-",
                _n(sat.get("cpu_s_per_1000"), 2),
            ]
            a = r.get("agreement")
            agreement.append(f"{a['equal']}/{a['of']}" if a else "-")
            rate, top = sat.get("msgs_per_s"), best[s]
            ratio.append(f"{rate / top:.2f}" if rate and top else "-")
        cells += [" · ".join(agreement), " · ".join(ratio)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    sizes = [
        f"{name} {s} {_n(r['saturation']['messages'])}"
        for s in streams
        for name, r in runs[s].items()
        if "saturation" in r
    ]
    if sizes:
        lines += ["Backlog drained per system (messages): " + ", ".join(sizes) + ".", ""]
    versions = peers.get("versions") or {}
    if versions:
        lines += ["Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".", ""]
    lines += [f"- {note}" for note in peers.get("notes", [])]
    for name, why in (peers.get("failed") or {}).items():
        for s, message in why.items():
            lines.append(f"- {name} on {s} could not run: {message.splitlines()[0][:300]}")
    return lines


def all_agree(peers: Mapping[str, Any]) -> bool:
    """True when no system failed and every system's labels equal the project's on all runs."""
    if peers.get("failed") or peers.get("missing"):
        return False
    return all(
        r["agreement"]["equal"] == r["agreement"]["of"]
        for per_system in peers.get("runs", {}).values()
        for r in per_system.values()
    )
