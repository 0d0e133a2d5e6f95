"""Stages 1-3 (naive, fixed-shape batched, engine) and the matmul peak, each in its own process.

``python -m bench.cpu '<json job>'`` runs one job and prints ``RESULT <json>`` as its last
line; :func:`run_job` starts such a process and parses that line. A fresh process per job
means each stage gets its own TensorFlow thread settings (set before TensorFlow's first
operation) and nothing compiled or cached by one stage helps another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

RESULT_PREFIX = "RESULT "


class JobError(Exception):
    """A benchmark subprocess failed; the message carries the tail of its output."""


def run_job(job: Mapping[str, Any], timeout_s: float = 3600.0) -> dict[str, Any]:
    """Run one job in a fresh ``python -m bench.cpu`` process and return its result.

    Args:
        job: JSON-serialisable job description (see :func:`main`).
        timeout_s: Longest run time (seconds).

    Raises:
        JobError: non-zero exit, timeout, or no result line.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, "-m", "bench.cpu", json.dumps(dict(job))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired as exc:
        raise JobError(f"{job.get('kind')} timed out after {timeout_s:.0f} s") from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise JobError(f"{job.get('kind')} failed (exit {proc.returncode}):\n{tail}")
    return dict(json.loads(lines[-1][len(RESULT_PREFIX) :]))


def _loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


# ----------------------------------------------------------------------------- jobs


def peak_job(seconds: float) -> dict[str, Any]:
    """Best float32 matmul rate of this machine with TensorFlow's default thread pools.

    Multiplies square matrices (1024-4096) for about ``seconds`` in total and reports the
    best rate: ``{"peak_gflops": float, "by_size": {n: gflops}}`` (1 GFLOP = 1e9 FLOP, a
    multiply-add counted as 2 FLOP).
    """
    import tensorflow as tf

    by_size: dict[str, float] = {}
    budget = max(0.5, seconds) / 3
    for n in (1024, 2048, 4096):
        a = tf.random.normal((n, n))
        b = tf.random.normal((n, n))
        matmul = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)[:1, :1]))
        matmul(a, b).numpy()
        best, began = float("inf"), time.perf_counter()
        while time.perf_counter() - began < budget:
            t0 = time.perf_counter()
            matmul(a, b).numpy()
            best = min(best, time.perf_counter() - t0)
        by_size[str(n)] = round(2 * n**3 / best / 1e9, 1)
    return {"peak_gflops": max(by_size.values()), "by_size": by_size}


def baseline_job(
    bundle: str, data_dir: str, stream: str, messages: int, naive_sample: int, batch_size: int
) -> dict[str, Any]:
    """Stages 1 and 2 with plain Keras (TensorFlow's default thread pools).

    Stage 1 (``naive``): for each of the first ``naive_sample`` messages, ``pipeline.encode``
    of that one text (padded to ``max_len``) then ``model.predict``; after 3 warm-up calls.

    Stage 2 (``fixed``): batches of ``batch_size`` messages, ``pipeline.encode`` to
    ``(batch_size, max_len)`` then ``model.predict_on_batch`` (Keras' compiled predict
    function); the last batch is padded with empty rows to keep the shape fixed. Encoding and
    inference are timed separately, so one pass gives the rate with tokenisation
    (``msgs_per_s``) and of inference alone (``infer_msgs_per_s``).
    """
    from model.engine import configure_threads

    configure_threads(intra_op=0, inter_op=0)  # 0 = TensorFlow's own default (all cores)
    from bench.streams import load_stream, mean_real_tokens
    from model import load_bundle

    b = load_bundle(bundle)
    s = load_stream(stream, Path(data_dir), messages)  # type: ignore[arg-type]
    model, pipeline = b.model, b.pipeline
    load_before = _loadavg()

    sample = s.texts[: max(1, naive_sample)]
    for text in sample[:3]:
        model.predict(pipeline.encode([text]), verbose=0)
    began = time.perf_counter()
    for text in sample:
        model.predict(pipeline.encode([text]), verbose=0)
    naive_s = time.perf_counter() - began

    max_len = pipeline.sequence.max_len
    warm = pipeline.encode(s.texts[:batch_size])
    warm = np.concatenate([warm, np.zeros((batch_size - len(warm), max_len), np.int32)])
    model.predict_on_batch(warm)
    encode_s = infer_s = 0.0
    for i in range(0, len(s.texts), batch_size):
        t0 = time.perf_counter()
        x = pipeline.encode(s.texts[i : i + batch_size])
        if len(x) < batch_size:
            x = np.concatenate([x, np.zeros((batch_size - len(x), max_len), np.int32)])
        t1 = time.perf_counter()
        model.predict_on_batch(x)
        t2 = time.perf_counter()
        encode_s += t1 - t0
        infer_s += t2 - t1
    n = len(s.texts)
    return {
        "naive": {"messages": len(sample), "seconds": naive_s, "msgs_per_s": len(sample) / naive_s},
        "fixed": {
            "messages": n,
            "batch_size": batch_size,
            "seconds": encode_s + infer_s,
            "encode_s": encode_s,
            "infer_s": infer_s,
            "msgs_per_s": n / (encode_s + infer_s),
            "infer_msgs_per_s": n / infer_s,
            "computed_tokens_per_msg": max_len,
        },
        "mean_real_tokens": mean_real_tokens(s, pipeline),
        "max_len": max_len,
        "distinct": len(s.distinct),
        "loadavg": [load_before, _loadavg()],
    }


def engine_job(
    bundle: str,
    data_dir: str,
    stream: str,
    messages: int,
    batch_size: int,
    engine: Mapping[str, Any] | None = None,
    threads: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Stage 3: the consumer's inference path (``Bundle.predict_proba``) on the same messages.

    Calls it once per batch of ``batch_size`` texts (what the consumer does per micro-batch),
    tokenisation included (``msgs_per_s``); then once per batch of already-encoded ids
    (``infer_msgs_per_s``). Also checks the engine against Keras ``model.predict`` on the
    first 512 messages (``max_abs_diff``).

    Args:
        engine: :class:`model.engine.EngineConfig` fields to override.
        threads: ``{"intra_op": n, "inter_op": n}`` for :func:`model.engine.configure_threads`.
    """
    from model.engine import EngineConfig, configure_threads

    configure_threads(**dict(threads or {}))
    from bench.streams import load_stream
    from model import load_bundle

    b = load_bundle(bundle)
    b.engine_config = EngineConfig(**dict(engine or {}))
    s = load_stream(stream, Path(data_dir), messages)  # type: ignore[arg-type]
    warmup_s = b.warmup()
    eng = b.engine
    load_before = _loadavg()

    check = s.texts[:512]
    expected = np.asarray(b.model.predict(b.pipeline.encode(check), verbose=0))
    max_abs_diff = float(np.max(np.abs(b.predict_proba(check) - expected)))

    before = eng.stats.as_dict()
    began = time.perf_counter()
    for i in range(0, len(s.texts), batch_size):
        b.predict_proba(s.texts[i : i + batch_size])
    texts_s = time.perf_counter() - began
    after = eng.stats.as_dict()

    encoded = eng.encode(s.texts)
    began = time.perf_counter()
    for i in range(0, len(encoded), batch_size):
        eng.predict_token_ids(encoded[i : i + batch_size])
    ids_s = time.perf_counter() - began
    n = len(s.texts)
    delta = {k: after[k] - before[k] for k in after}
    return {
        "engine": {
            "messages": n,
            "batch_size": batch_size,
            "seconds": texts_s,
            "msgs_per_s": n / texts_s,
            "infer_msgs_per_s": n / ids_s,
            "real_tokens": delta["real_tokens"],
            "computed_tokens": delta["computed_tokens"],
            "computed_tokens_per_msg": delta["computed_tokens"] / max(1, delta["rows"]),
            "chunks": delta["chunks"],
            "encode_s": delta["encode_s"],
            "max_abs_diff": max_abs_diff,
            "warmup_s": warmup_s,
            "describe": eng.describe(),
        },
        "macs": _macs(eng),
        "loadavg": [load_before, _loadavg()],
    }


def _macs(eng: Any) -> dict[str, int]:
    from model.engine import macs_summary

    if eng.spec is None:
        return {}
    return dict(macs_summary(eng.spec, eng.folded))


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m bench.cpu '<json job>'`` → ``RESULT <json>`` on stdout.

    A job is ``{"kind": "peak", "seconds": s}``, ``{"kind": "baseline", ...}`` (arguments of
    :func:`baseline_job`) or ``{"kind": "engine", ...}`` (arguments of :func:`engine_job`).
    """
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.cpu '<json job>'", file=sys.stderr)
        return 2
    job = json.loads(args[0])
    kind = job.pop("kind")
    if kind == "peak":
        from model.engine import configure_threads

        configure_threads(intra_op=0, inter_op=0)
        result = peak_job(**job)
    elif kind == "baseline":
        result = baseline_job(**job)
    elif kind == "engine":
        result = engine_job(**job)
    else:
        print(f"unknown job kind {kind!r}", file=sys.stderr)
        return 2
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
