"""The benchmark's tables (markdown) and target checks, from the results JSON."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: The issues' targets (issues 5-6 and 14); every ratio is taken within one run.
TARGET_SHORT_VS_FIXED = 1.5
TARGET_LONG_VS_FIXED = 0.8
TARGET_VS_NAIVE = 200.0
#: Issue 14: p99 end-to-end latency at 50 % load, both streams (ms; was 250).
TARGET_P99_MS = 100.0
TARGET_RSS_GB = 1.5
#: Issue 14: short stream end to end >= this x stage 3 (the engine alone, tokenisation incl.).
TARGET_SHORT_VS_ENGINE = 0.6
#: Issue 14: long stream end to end, useful work >= this share of the measured matmul peak.
TARGET_LONG_PEAK_SHARE = 0.45


def _get(d: Mapping[str, Any] | None, *path: str) -> Any:
    cur: Any = d
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _num(value: Any, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _decoding(d: Mapping[str, float] | None) -> str:
    if not d:
        return "-"
    stdlib, fast, ratio = (_num(d.get(k), 2) for k in ("stdlib_us", "orjson_us", "speedup"))
    return f"{stdlib} → {fast} ({ratio} x)"


def _pcts(p: Mapping[str, float] | None) -> str:
    if not p:
        return "-"
    return " / ".join(_num(p.get(q)) for q in ("p50", "p95", "p99"))


def useful_work(
    stream: Mapping[str, Any],
    rate: float | None,
    peak_gflops: float | None,
    per_token: str = "macs_per_token",
) -> tuple[float | None, float | None]:
    """Useful GFLOP/s at ``rate`` messages/s, and that as a fraction of ``peak_gflops``.

    Useful work is 2 x the multiply-adds on real tokens (recurrent layers) plus the dense
    head's per message.
    """
    macs = stream.get("macs") or {}
    tokens = stream.get("mean_real_tokens")
    if not rate or not macs or tokens is None:
        return None, None
    flop_per_msg = 2 * (tokens * macs[per_token] + macs["head_macs_per_sequence"])
    gflops = rate * flop_per_msg / 1e9
    return gflops, (gflops / peak_gflops if peak_gflops else None)


def targets(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets evaluated on ``results`` (ratios within this one run).

    Returns:
        Rows ``{"target", "stream", "value", "required", "met"}`` (``met`` is None when a
        stage is missing).
    """
    rows: list[dict[str, Any]] = []
    streams = results.get("streams", {})

    def add(target: str, stream: str, value: float | None, required: float, higher: bool) -> None:
        met = None if value is None else (value >= required if higher else value <= required)
        rows.append(
            {"target": target, "stream": stream, "value": value, "required": required, "met": met}
        )

    for name, s in streams.items():
        e2e = _get(s, "e2e", "saturation", "msgs_per_s")
        fixed = _get(s, "fixed", "msgs_per_s")
        naive = _get(s, "naive", "msgs_per_s")
        if name == "short":
            add(
                "(4) >= 1.5 x (2) fixed-shape",
                name,
                e2e / fixed if e2e and fixed else None,
                TARGET_SHORT_VS_FIXED,
                True,
            )
        if name == "long":
            add(
                "(4) >= 0.8 x (2) fixed-shape",
                name,
                e2e / fixed if e2e and fixed else None,
                TARGET_LONG_VS_FIXED,
                True,
            )
        add("(4) >= 200 x (1) naive", name, e2e / naive if e2e and naive else None, 200.0, True)
        if name == "short":
            engine = _get(s, "engine", "msgs_per_s")
            ratio = e2e / engine if e2e and engine else None
            add("(4) >= 0.6 x (3) engine alone", name, ratio, TARGET_SHORT_VS_ENGINE, True)
        if name == "long":
            _, share = useful_work(s, e2e, _get(results, "peak", "peak_gflops"))
            add("(4) useful work >= 45% of peak", name, share, TARGET_LONG_PEAK_SHARE, True)
        paced = _get(s, "e2e", "paced") or []
        half = next((p for p in paced if abs(p["load"] - 0.5) < 1e-9), None)
        add(
            "p99 e2e latency at 50% load <= 100 ms",
            name,
            _get(half, "e2e_ms", "p99"),
            TARGET_P99_MS,
            False,
        )
        hwm = _get(s, "e2e", "memory_kb", "VmHWM")
        add(
            "consumer peak RSS <= 1.5 GB",
            name,
            hwm * 1024 / 1e9 if hwm else None,
            TARGET_RSS_GB,
            False,
        )
    return rows


def markdown(results: Mapping[str, Any]) -> str:
    """The results as markdown: throughput/latency table, useful work, targets."""
    streams: Mapping[str, Any] = results.get("streams", {})
    names = list(streams)
    peak = _get(results, "peak", "peak_gflops")
    lines = []
    header = "| stage | " + " | ".join(names) + " |"
    rule = "| --- |" + " ---: |" * len(names)

    def row(label: str, values: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    lines += [header, rule]
    row(
        "messages (distinct texts) · mean real tokens/msg",
        [
            f"{_num(_get(s, 'engine', 'messages') or _get(s, 'fixed', 'messages'))} "
            f"({_num(s.get('distinct'))}) · {_num(s.get('mean_real_tokens'), 1)}"
            for s in streams.values()
        ],
    )
    row(
        "0 record decoding + validation, µs/msg: stdlib `json` → bounded orjson (speed-up)",
        [_decoding(_get(s, "decoding")) for s in streams.values()],
    )
    row(
        "1 naive: per-message `model.predict` (msgs/s, sampled)",
        [_num(_get(s, "naive", "msgs_per_s"), 1) for s in streams.values()],
    )
    row(
        "2 fixed-shape: 256 x max_len `predict_on_batch`, incl. tokenisation (msgs/s)",
        [_num(_get(s, "fixed", "msgs_per_s")) for s in streams.values()],
    )
    row(
        "2' fixed-shape, inference only (msgs/s)",
        [_num(_get(s, "fixed", "infer_msgs_per_s")) for s in streams.values()],
    )
    row(
        "3 engine: `Bundle.predict_proba` per 256, incl. tokenisation (msgs/s)",
        [_num(_get(s, "engine", "msgs_per_s")) for s in streams.values()],
    )
    row(
        "3' engine, inference only (msgs/s)",
        [_num(_get(s, "engine", "infer_msgs_per_s")) for s in streams.values()],
    )
    row(
        "4 end to end through Kafka, saturated (msgs/s)",
        [_num(_get(s, "e2e", "saturation", "msgs_per_s")) for s in streams.values()],
    )
    row(
        "4 e2e latency draining the backlog, p50/p95/p99 (ms; mostly queueing)",
        [_pcts(_get(s, "e2e", "saturation", "e2e_ms")) for s in streams.values()],
    )
    row(
        "4 consumer processing latency at saturation, p50/p95/p99 (ms)",
        [_pcts(_get(s, "e2e", "saturation", "processing_ms")) for s in streams.values()],
    )
    loads = sorted({p["load"] for s in streams.values() for p in (_get(s, "e2e", "paced") or [])})
    for load in loads:

        def paced(s: Mapping[str, Any], load: float = load) -> Mapping[str, Any] | None:
            return next((p for p in _get(s, "e2e", "paced") or [] if p["load"] == load), None)

        row(
            f"4 e2e latency, producer paced at {load:.0%} (msgs/s · p50/p95/p99 ms)",
            [
                f"{_num(_get(paced(s), 'achieved_rate'))} · {_pcts(_get(paced(s), 'e2e_ms'))}"
                for s in streams.values()
            ],
        )
    row(
        "5 consumer peak RSS (MB)",
        [
            _num((_get(s, "e2e", "memory_kb", "VmHWM") or 0) / 1024 or None)
            for s in streams.values()
        ],
    )
    lines.append("")
    lines.append(
        "Useful work = 2 x the model's multiply-adds on real (non-padding) tokens per second "
        "(recurrent layers: directions x 4 x (input + units) x units per token; dense head per "
        f"message), against the measured float32 matmul peak of {_num(peak, 1)} GFLOP/s "
        "(TensorFlow, square matrices up to 4096, all cores; "
        f"{_num(_get(results, 'machine', 'nominal_peak_gflops'), 1)} GFLOP/s at the reported "
        "clock x 32 FLOP/cycle/core):"
    )
    lines.append("")
    lines += [header, rule]
    for label, key, per_token in (
        ("2 fixed-shape", ("fixed", "msgs_per_s"), "macs_per_token"),
        ("2' fixed-shape, inference only", ("fixed", "infer_msgs_per_s"), "macs_per_token"),
        ("3' engine, inference only", ("engine", "infer_msgs_per_s"), "macs_per_token"),
        (
            "3' engine, inference only: multiply-adds it executes",
            ("engine", "infer_msgs_per_s"),
            "executed_macs_per_token",
        ),
        ("4 end to end", ("e2e", "saturation", "msgs_per_s"), "macs_per_token"),
    ):
        cells = []
        for s in streams.values():
            gflops, share = useful_work(s, _get(s, *key), peak, per_token)
            cells.append(f"{_num(gflops, 1)} GFLOP/s ({_num(share and share * 100, 1)}%)")
        row(label, cells)
    lines.append("")
    lines.append("| target | stream | measured | required | met |")
    lines.append("| --- | --- | ---: | ---: | :---: |")
    for t in targets(results):
        met = {True: "yes", False: "**no**", None: "-"}[t["met"]]
        lines.append(
            f"| {t['target']} | {t['stream']} | {_num(t['value'], 2)} | {t['required']:g} | {met} |"
        )
    lines += processes_table(results)
    lines += formats_table(results)
    lines += drift_table(results)
    lines += restart_table(results)
    lines += reload_table(results)
    lines += http_table(results)
    if "peers" in results:
        from bench.peers.report import markdown as peers_markdown

        lines += ["", *peers_markdown(results["peers"])]
    return "\n".join(lines) + "\n"


def formats_table(results: Mapping[str, Any]) -> list[str]:
    """The wire-format stage: Avro via a Schema Registry vs JSON (empty when not run)."""
    streams = {n: s["formats"] for n, s in results.get("streams", {}).items() if "formats" in s}
    if not streams:
        return []
    lines = [
        "",
        "| wire format, saturated drain (`bench/formats.py`) | " + " | ".join(streams) + " |",
        "| --- |" + " ---: |" * len(streams),
    ]
    for fmt, label in (("json", "JSON in, JSON out"), ("avro", "Avro in, Avro out (registry)")):
        lines.append(
            f"| {label} (msgs/s · processing p50/p99 ms) | "
            + " | ".join(
                f"{_num(_get(f, fmt, 'saturation', 'msgs_per_s'))} · "
                f"{_num(_get(f, fmt, 'saturation', 'processing_ms', 'p50'), 1)}/"
                f"{_num(_get(f, fmt, 'saturation', 'processing_ms', 'p99'), 1)}"
                for f in streams.values()
            )
            + " |"
        )
    lines.append(
        "| Avro / JSON throughput | "
        + " | ".join(f"{_num(f.get('avro_vs_json'), 2)} x" for f in streams.values())
        + " |"
    )
    return lines


def drift_table(results: Mapping[str, Any]) -> list[str]:
    """The drift-signals stage: saturated drain with them off and on (empty when not run)."""
    streams = {n: s["drift"] for n, s in results.get("streams", {}).items() if "drift" in s}
    if not streams:
        return []
    lines = [
        "",
        "| drift signals, saturated drain (`bench/drift.py`) | " + " | ".join(streams) + " |",
        "| --- |" + " ---: |" * len(streams),
    ]
    for mode, label in (("off", "off (`--drift-window-documents 0`)"), ("on", "on (default)")):
        lines.append(
            f"| {label}, msgs/s of two runs | "
            + " | ".join(
                " / ".join(_num(_get(r, "saturation", "msgs_per_s")) for r in d.get(mode, []))
                for d in streams.values()
            )
            + " |"
        )
    lines.append(
        "| on / off throughput | "
        + " | ".join(f"{_num(d.get('on_vs_off'), 2)} x" for d in streams.values())
        + " |"
    )
    return lines


def processes_table(results: Mapping[str, Any]) -> list[str]:
    """Stage 4 per number of consumer processes, side by side (empty with one count only)."""
    streams: Mapping[str, Any] = results.get("streams", {})
    columns: list[tuple[str, Mapping[str, Any]]] = []
    for name, s in streams.items():
        runs = [r for r in [s.get("e2e"), *(s.get("e2e_processes") or {}).values()] if r]
        for r in sorted(runs, key=lambda r: int(r.get("processes", 1))):
            n = int(r.get("processes", 1))
            columns.append((f"{name}, {n} process{'es' if n > 1 else ''}", r))
    if len({r.get("processes", 1) for _, r in columns}) < 2:
        return []
    runs = [r for _, r in columns]
    lines = [
        "",
        "| stage 4 by consumer processes (`--processes`) | "
        + " | ".join(label for label, _ in columns)
        + " |",
        "| --- |" + " ---: |" * len(columns),
    ]

    def row(label: str, values: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    row("saturated (msgs/s)", [_num(_get(r, "saturation", "msgs_per_s")) for r in runs])
    row(
        "consumer processing latency at saturation, p50/p95/p99 (ms)",
        [_pcts(_get(r, "saturation", "processing_ms")) for r in runs],
    )
    for load in sorted({p["load"] for r in runs for p in (r.get("paced") or [])}):
        row(
            f"e2e latency, producer paced at {load:.0%} (msgs/s · p50/p95/p99 ms)",
            [
                next(
                    (
                        f"{_num(p.get('achieved_rate'))} · {_pcts(p.get('e2e_ms'))}"
                        for p in r.get("paced") or []
                        if p["load"] == load
                    ),
                    "-",
                )
                for r in runs
            ],
        )
    row(
        "peak RSS, sum over the processes (MB)",
        [_num((_get(r, "memory_kb", "VmHWM") or 0) / 1024 or None) for r in runs],
    )
    return lines


def restart_table(results: Mapping[str, Any]) -> list[str]:
    """Restart to first batch, dynamic vs static membership (empty when not run)."""
    restart = results.get("restart")
    if not restart:
        return []
    kinds = [k for k in ("dynamic", "static") if k in restart]
    timeout = next(iter(restart.values())).get("session_timeout_ms")
    lines = [
        "",
        f"| restart to first batch: SIGKILL with a backlog, restarted at once "
        f"(session.timeout.ms {timeout}) | " + " | ".join(f"{k} membership" for k in kinds) + " |",
        "| --- |" + " ---: |" * len(kinds),
    ]
    for label, key in (
        ("restart → first batch committed (s)", "restart_to_first_batch_s"),
        ("of which start-up: imports, model load, warm-up (s)", "start_s"),
        ("of which joining the group (s)", "join_s"),
        ("of which the first batch (s)", "first_batch_s"),
    ):
        lines.append(f"| {label} | " + " | ".join(_num(restart[k].get(key), 1) for k in kinds))
        lines[-1] += " |"
    return lines


def reload_table(results: Mapping[str, Any]) -> list[str]:
    """A new model version published under ``--processes N``: each worker's swap time."""
    reload = results.get("reload")
    if not reload:
        return []
    workers = reload["workers"]
    return [
        "",
        f"| model reload across {reload['processes']} workers "
        f"(reload_interval_s {reload['reload_interval_s']:g}) | "
        + " | ".join(f"worker {w}" for w in workers)
        + " |",
        "| --- |" + " ---: |" * len(workers),
        "| new version published → swapped in (s) | "
        + " | ".join(_num(w.get("swapped_s"), 1) for w in workers.values())
        + " |",
        "| of which the new version's warm-up (s) | "
        + " | ".join(_num(w.get("warmup_s"), 1) for w in workers.values())
        + " |",
    ]


def _p50_p99(p: Mapping[str, float]) -> str:
    return f"{_num(p.get('p50'), 1)} / {_num(p.get('p99'), 1)}"


def http_table(results: Mapping[str, Any]) -> list[str]:
    """The HTTP stage as markdown rows: req/s and p50/p99 per client count, both modes."""
    http = results.get("http")
    if not http:
        return []
    modes = [m for m in ("batching", "no batching") if m in http]
    lines = [
        "",
        "| HTTP `/v1/classify`, single AG News snippets | " + " | ".join(modes) + " |",
        "| --- |" + " ---: |" * len(modes),
    ]
    for n in http[modes[0]]["clients"]:
        cells = []
        for m in modes:
            r = http[m]["clients"][n]
            cells.append(f"{_num(r['requests_per_s'])} req/s · {_p50_p99(r['latency_ms'])} ms")
        lines.append(f"| {n} clients: throughput · p50/p99 | " + " | ".join(cells) + " |")
    paced = [
        f"{_num(http[m]['paced_50']['requests_per_s'])} req/s · "
        f"{_p50_p99(http[m]['paced_50']['latency_ms'])} ms"
        for m in modes
    ]
    lines.append("| 50 % of each mode's saturated rate: achieved · p50/p99 | " + " | ".join(paced))
    lines[-1] += " |"
    speedup = http.get("speedup_at_max_clients")
    lines.append(f"| batching / no batching at the most clients | {speedup} x | |")
    return lines


def summarise_profile(path: Path, top: int = 25) -> dict[str, Any]:
    """Summarise a py-spy ``--format raw`` file (``frame;frame;... count`` per line).

    Returns:
        ``samples``; ``threads``: samples per thread; ``self``: the ``top`` functions by
        samples where they were the innermost frame; ``inclusive``: by samples where they
        were anywhere on the stack (each counted once per sample).
    """
    samples = 0
    threads: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread")), "?")
        code = [f for f in frames if not f.startswith(("thread", "process"))]
        samples += count
        threads[thread] += count
        if code:
            own[_short(code[-1])] += count
        for name in {_short(f) for f in code}:
            inclusive[name] += count
    return {
        "samples": samples,
        "threads": dict(threads.most_common(10)),
        "self": dict(own.most_common(top)),
        "inclusive": dict(inclusive.most_common(top)),
    }


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` → ``func (module.py)``."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})" if file else name
