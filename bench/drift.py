"""``python -m bench.drift``: the drift signals of a real run, as a table and a PNG.

A BBC bundle serves a stream in three phases through the real consumer process and a real
broker: held-out BBC articles (the bundle's own test split: what it was trained for), then
20 Newsgroups posts (another vocabulary, other lengths, no BBC category), then the BBC
articles again. Every ``--step`` documents the consumer's ``/metrics`` are scraped; the
table gives the window's values at the end of each phase, the PNG (``--png``) the scores
and the OOV rate over the whole run (``docs/operations.md`` shows it)::

    python -m training.fit --dataset bbc --data-dir ../shared/datasets --output models/bbc
    python -m bench.drift --data-dir ../shared/datasets --bundle models/bbc \
        --png docs/images/drift.png

The alert delay is 0 here (a run lasts seconds); in production ``--drift-alert-after-s``
keeps one odd minute from firing it.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.e2e import consumer_args, saturated_drain
from bench.http import free_port
from bench.kafka_io import E2EError, broker, create_topics, produce_all, wait_for

REPO = Path(__file__).resolve().parents[1]
QUANTITIES = ("label", "confidence", "length", "oov", "truncation")


@dataclass
class Sample:
    """One scrape: documents predicted so far, the phase, and the window's signals."""

    documents: int
    phase: str
    window: float
    oov_live: float
    oov_reference: float
    truncated_live: float
    truncated_reference: float
    psi: dict[str, float] = field(default_factory=dict)
    js: dict[str, float] = field(default_factory=dict)
    alert: dict[str, float] = field(default_factory=dict)


def scrape(port: int, version: str, documents: int, phase: str) -> Sample:
    """Parse the consumer's ``/metrics`` into a :class:`Sample` (prometheus-client's parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("model_version") == version:
                key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "model_version"))
                values[(s.name, key)] = s.value

    def get(name: str, **labels: str) -> float:
        return values.get((name, tuple(sorted(labels.items()))), float("nan"))

    return Sample(
        documents,
        phase,
        get("classifier_drift_window_documents"),
        get("classifier_text_oov_rate", window="live"),
        get("classifier_text_oov_rate", window="reference"),
        get("classifier_text_truncated_share", window="live"),
        get("classifier_text_truncated_share", window="reference"),
        {q: get("classifier_drift_psi", quantity=q) for q in QUANTITIES},
        {q: get("classifier_drift_js_distance", quantity=q) for q in QUANTITIES},
        {q: get("classifier_drift_alert", quantity=q) for q in QUANTITIES},
    )


def phases(bundle_dir: Path, data_dir: Path, posts: int) -> list[tuple[str, list[str]]]:
    """``(name, texts)``: the bundle's held-out BBC rows, 20 Newsgroups test posts, BBC again.

    Raises:
        E2EError: the bundle has no ``split.json`` with test rows of a CSV file.
    """
    from model import load_bundle
    from training.data import load_csv
    from training.datasets import load_named

    bundle = load_bundle(bundle_dir)
    split = json.loads((bundle.path / "split.json").read_text())
    source = Path(bundle.manifest.training.get("dataset", ""))
    if not split.get("test_indices") or not source.is_file():
        raise E2EError(f"{bundle.path}: no held-out BBC rows recorded (train it on bbc)")
    data = load_csv(source, "text", "category")
    bbc = [data.texts[i] for i in split["test_indices"]]
    newsgroups = load_named("20newsgroups", data_dir)
    pool = (newsgroups.test or newsgroups.train).texts
    stride = max(1, len(pool) // posts)
    return [("bbc", bbc), ("20newsgroups", pool[::stride][:posts]), ("bbc again", bbc)]


def run(
    bootstrap: str, bundle_dir: Path, streams: Sequence[tuple[str, list[str]]], args: Any
) -> tuple[str, list[Sample]]:
    """Stream the phases through one consumer; scrape every ``args.step`` documents.

    Raises:
        E2EError: the consumer did not start or fell silent.
    """
    from model import load_bundle

    version = load_bundle(bundle_dir).version
    name = uuid.uuid4().hex[:8]
    topics = {"in": f"drift-in-{name}", "out": f"drift-out-{name}", "dlq": f"drift-dlq-{name}"}
    create_topics(bootstrap, list(topics.values()))
    port = free_port()
    cmd = [
        sys.executable, "-m", "consumer",
        *consumer_args(bundle_dir, bootstrap, topics, f"drift-{name}", 64, 0),
        "--metrics-port", str(port), "--metrics-host", "127.0.0.1",
        "--drift-window-documents", str(args.window),
        "--drift-min-documents", str(args.min_documents),
        "--drift-alert-after-s", "0",
    ]  # fmt: skip
    log = Path(tempfile.mkstemp(prefix="drift-consumer-", suffix=".log")[1])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=out, env=env)
    samples: list[Sample] = []
    done = 0
    try:
        for phase, texts in streams:
            for start in range(0, len(texts), args.step):
                chunk = texts[start : start + args.step]
                produce_all(bootstrap, topics["in"], f"{phase}-{start}", chunk)
                done += len(chunk)
                wait_for(bootstrap, topics["out"], done, timeout_s=180)
                time.sleep(0.3)  # the drift observer counts a batch right after its commit
                samples.append(scrape(port, version, done, phase))
    except E2EError as exc:
        raise E2EError(f"{exc}; consumer log {log}") from exc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    return version, samples


def overhead(
    bootstrap: str,
    bundle: Path,
    name: str,
    texts: Sequence[str],
    messages: int,
    warmup: int,
    max_batch_size: int,
    log_dir: Path,
) -> dict[str, Any]:
    """Saturated drain with the drift signals off, then on, then off and on again.

    Side by side in one run on the same broker, bundle and texts (stage 4's
    :func:`bench.e2e.saturated_drain`): what counting every committed micro-batch into the
    drift window costs the stream.

    Returns:
        ``{"off": [run, run], "on": [run, run], "on_vs_off": ratio of mean msgs/s}``.

    Raises:
        E2EError: a run failed.
    """
    out: dict[str, Any] = {"off": [], "on": []}
    for mode in ("off", "on", "off", "on"):
        extra = ["--drift-window-documents", "0"] if mode == "off" else []
        out[mode].append(
            saturated_drain(
                bootstrap,
                bundle,
                f"{name}-drift-{mode}",
                texts,
                messages=messages,
                warmup=warmup,
                max_batch_size=max_batch_size,
                log_dir=log_dir,
                extra_args=extra,
            )
        )
    mean = {m: sum(r["saturation"]["msgs_per_s"] for r in out[m]) / 2 for m in ("off", "on")}
    out["on_vs_off"] = mean["on"] / mean["off"] if mean["off"] else float("nan")
    return out


def table(samples: Sequence[Sample]) -> str:
    """Markdown: the window at the end of each phase."""
    head = ["phase", "documents", "OOV rate live / ref", "truncated live / ref"]
    head += [f"PSI {q}" for q in QUANTITIES] + ["JS oov", "alerts firing"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    ends = [
        s for i, s in enumerate(samples) if i + 1 == len(samples) or samples[i + 1].phase != s.phase
    ]
    for s in ends:
        firing = ", ".join(q for q in QUANTITIES if s.alert.get(q) == 1) or "none"
        cells = [
            s.phase,
            f"{s.documents:,}",
            f"{s.oov_live:.3f} / {s.oov_reference:.3f}",
            f"{s.truncated_live:.2f} / {s.truncated_reference:.2f}",
            *(f"{s.psi[q]:.3f}" for q in QUANTITIES),
            f"{s.js['oov']:.3f}",
            firing,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(samples: Sequence[Sample], threshold: float, version: str, path: Path) -> None:
    """Two panels over the run: PSI per quantity (log scale) and the OOV rate vs reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s.documents for s in samples]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True)
    for q in QUANTITIES:
        top.plot(x, [max(s.psi[q], 1e-4) for s in samples], marker=".", label=f"PSI {q}")
    top.axhline(threshold, color="black", linestyle="--", linewidth=1, label="alert threshold")
    top.set_yscale("log")
    top.set_ylabel("PSI (window vs reference)")
    for name, live, reference, color in (
        ("OOV rate", [s.oov_live for s in samples], [s.oov_reference for s in samples], "C0"),
        (
            "truncated",
            [s.truncated_live for s in samples],
            [s.truncated_reference for s in samples],
            "C2",
        ),
    ):
        bottom.plot(x, live, marker=".", color=color, label=f"{name}, live")
        bottom.plot(x, reference, linestyle="--", color=color, label=f"{name}, reference")
    firing = [s.documents for s in samples if any(v == 1 for v in s.alert.values())]
    if firing:
        bottom.scatter(firing, [0.03] * len(firing), marker="|", s=200, color="red")
        bottom.annotate("drift_alert firing", (firing[0], 0.06), color="red", fontsize=8)
    bottom.set_ylim(0, 1)
    bottom.set_ylabel("share")
    bottom.set_xlabel("documents predicted")
    changes = [i + 1 for i in range(len(samples) - 1) if samples[i + 1].phase != samples[i].phase]
    for axis in (top, bottom):
        axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
        for i in changes:
            axis.axvline(samples[i - 1].documents, color="grey", linewidth=0.8)
    for i in [0, *changes]:
        start = samples[i - 1].documents if i else 0
        top.annotate(
            samples[i].phase,
            (start, 1),
            xycoords=("data", "axes fraction"),
            xytext=(4, -12),
            textcoords="offset points",
            fontsize=9,
        )
    fig.suptitle(f"BBC bundle {version}: BBC articles, then 20 Newsgroups posts, then BBC")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the phases, print the table; write ``--png`` and ``--json`` when asked."""
    p = argparse.ArgumentParser(prog="python -m bench.drift", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=os.environ.get("CLASSIFIER_DATA_DIR"))
    p.add_argument("--bundle", type=Path, required=True, help="a BBC model directory or version")
    p.add_argument(
        "--bootstrap-servers", help="default: $KAFKA_BOOTSTRAP_SERVERS or a local broker"
    )
    p.add_argument("--window", type=int, default=300, help="--drift-window-documents")
    p.add_argument("--min-documents", type=int, default=100, help="--drift-min-documents")
    p.add_argument("--posts", type=int, default=600, help="20 Newsgroups posts streamed")
    p.add_argument("--step", type=int, default=50, help="documents between two scrapes")
    p.add_argument("--threshold", type=float, default=0.25, help="PSI threshold drawn")
    p.add_argument("--png", type=Path, help="write the plot here")
    p.add_argument("--json", type=Path, help="write the samples here")
    args = p.parse_args(argv)
    if args.data_dir is None:
        p.error("--data-dir (or $CLASSIFIER_DATA_DIR) names the folder holding 20newsgroups/")
    try:
        streams = phases(args.bundle, args.data_dir, args.posts)
        with broker(args.bootstrap_servers, REPO / "artifacts" / "bench") as bootstrap:
            version, samples = run(bootstrap, args.bundle, streams, args)
    except E2EError as exc:
        print(f"bench.drift: {exc}", file=sys.stderr)
        return 1
    print(table(samples))
    if args.png:
        plot(samples, args.threshold, version, args.png)
        print(f"plot: {args.png}")
    if args.json:
        args.json.write_text(json.dumps([s.__dict__ for s in samples], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
