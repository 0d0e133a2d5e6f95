"""``python -m bench`` works: the CPU stages in quick mode on real data, and its reporting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.report import markdown, summarise_profile, targets, useful_work
from bench.streams import load_stream, mean_real_tokens
from model import load_bundle

REPO = Path(__file__).resolve().parents[2]


def test_quick_run_of_the_cpu_stages(bbc_bundle: Path, data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results"
    cmd = [
        sys.executable, "-m", "bench", "--quick", "--no-e2e", "--no-http",
        "--data-dir", str(data_dir), "--bundle", str(bbc_bundle),
        "--messages", "96", "--naive-sample", "4", "--out", str(out),
    ]  # fmt: skip
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.with_suffix(".json").read_text())
    assert results["peak"]["peak_gflops"] > 0
    for name in ("short", "long"):
        s = results["streams"][name]
        assert s["naive"]["messages"] == 4
        assert s["fixed"]["messages"] == 96
        assert s["engine"]["messages"] == 96
        for stage in ("naive", "fixed", "engine"):
            assert s[stage]["msgs_per_s"] > 0
        assert s["engine"]["max_abs_diff"] <= 1e-5
        assert s["engine"]["describe"]["path"] == "fused"
        assert 0 < s["engine"]["real_tokens"] <= s["engine"]["computed_tokens"]
        assert s["macs"]["macs_per_token"] > s["macs"]["executed_macs_per_token"] > 0
        assert s["decoding"]["messages"] == 96
        assert 0 < s["decoding"]["orjson_us"] < 1000
        assert s["decoding"]["speedup"] > 0
    # short news snippets carry far fewer real tokens than BBC articles
    assert (
        results["streams"]["short"]["mean_real_tokens"]
        < 0.5 * (results["streams"]["long"]["mean_real_tokens"])
    )
    table = out.with_suffix(".md").read_text()
    assert "| 3 engine" in table
    assert "| 1 naive" in table
    assert "| 0 record decoding" in table
    assert "2' fixed-shape, inference only" in proc.stdout


def test_streams_cycle_the_real_datasets(data_dir: Path, bbc_bundle: Path) -> None:
    short = load_stream("short", data_dir, 7_700)
    assert len(short.distinct) == 7_600
    assert short.texts[7_600] == short.texts[0]
    assert len(short.texts) == 7_700
    long = load_stream("long", data_dir, 10)
    assert len(long.distinct) == 2_225
    pipeline = load_bundle(bbc_bundle).pipeline
    expected = sum(min(len(pipeline.token_ids(t)), 120) for t in long.texts) / 10
    assert mean_real_tokens(long, pipeline) == pytest.approx(expected)
    with pytest.raises(ValueError, match="messages"):
        load_stream("short", data_dir, 0)


def _results() -> dict[str, Any]:
    stream = {
        "naive": {"msgs_per_s": 10.0},
        "fixed": {"msgs_per_s": 1000.0, "infer_msgs_per_s": 1500.0},
        "engine": {"msgs_per_s": 5000.0, "infer_msgs_per_s": 9000.0},
        "mean_real_tokens": 30.0,
        "macs": {
            "macs_per_token": 65536,
            "executed_macs_per_token": 32768,
            "head_macs_per_sequence": 8448,
        },
        "e2e": {
            "saturation": {"msgs_per_s": 2500.0},
            "paced": [{"load": 0.5, "achieved_rate": 1250.0, "e2e_ms": {"p99": 120.0}}],
            "memory_kb": {"VmHWM": 900_000},
        },
    }
    long = json.loads(json.dumps(stream))
    long["e2e"]["saturation"]["msgs_per_s"] = 700.0
    long["e2e"]["paced"][0]["e2e_ms"]["p99"] = 400.0
    return {"streams": {"short": stream, "long": long}, "peak": {"peak_gflops": 100.0}}


def test_targets_are_ratios_within_the_run() -> None:
    rows = {(t["target"], t["stream"]): t for t in targets(_results())}
    short = rows[("(4) >= 1.5 x (2) fixed-shape", "short")]
    assert short["value"] == pytest.approx(2.5)
    assert short["met"] is True
    long = rows[("(4) >= 0.8 x (2) fixed-shape", "long")]
    assert long["value"] == pytest.approx(0.7)
    assert long["met"] is False
    assert rows[("(4) >= 200 x (1) naive", "short")]["value"] == pytest.approx(250.0)
    assert rows[("p99 e2e latency at 50% load <= 100 ms", "long")]["met"] is False
    assert rows[("p99 e2e latency at 50% load <= 100 ms", "short")]["met"] is False  # 120 ms
    engine = rows[("(4) >= 0.6 x (3) engine alone", "short")]
    assert engine["value"] == pytest.approx(0.5)  # 2,500 of 5,000 msgs/s
    assert engine["met"] is False
    # long: 700 msgs/s x 2 x (30 x 65,536 + 8,448) FLOP = 2.76 GFLOP/s of the 100 peak
    share = rows[("(4) useful work >= 45% of peak", "long")]
    assert share["value"] == pytest.approx(700 * 2 * (30 * 65536 + 8448) / 1e9 / 100)
    assert share["met"] is False
    assert rows[("consumer peak RSS <= 1.5 GB", "short")]["value"] == pytest.approx(0.9216)


def test_useful_work_counts_real_tokens_only() -> None:
    stream = _results()["streams"]["short"]
    gflops, share = useful_work(stream, 1000.0, 100.0)
    assert gflops is not None
    assert gflops == pytest.approx(1000 * 2 * (30 * 65536 + 8448) / 1e9)
    assert share == pytest.approx(gflops / 100.0)
    assert useful_work(stream, None, 100.0) == (None, None)


def test_markdown_has_every_stage_and_target() -> None:
    text = markdown(_results())
    for label in ("1 naive", "2 fixed-shape", "3 engine", "4 end to end", "5 consumer peak RSS"):
        assert label in text
    assert "paced at 50%" in text
    assert "**no**" in text  # the long stream misses two of the made-up targets


def test_profile_summary(tmp_path: Path) -> None:
    raw = tmp_path / "profile.txt"
    raw.write_text(
        'process 1:"python";thread (0x1);main (consumer/__main__.py:10);'
        "predict (model/engine.py:5) 30\n"
        'process 1:"python";thread (0x1);main (consumer/__main__.py:10) 10\n'
        'process 1:"python";thread (0x2);run (bench/x.py:3) 5\n'
    )
    summary = summarise_profile(raw)
    assert summary["samples"] == 45
    assert summary["self"]["predict (engine.py)"] == 30
    assert summary["inclusive"]["main (__main__.py)"] == 40
    assert summary["threads"]["thread (0x1)"] == 40


def test_http_stage_measures_both_modes_side_by_side(bbc_bundle: Path, data_dir: Path) -> None:
    from bench import http
    from bench.report import http_table
    from bench.streams import load_stream

    snippets = load_stream("short", data_dir, 1).distinct[:200]
    result = http.run(bbc_bundle, snippets, clients=(1, 8), seconds=2, paced_seconds=2)
    for mode in ("batching", "no batching"):
        for n in ("1", "8"):
            run = result[mode]["clients"][n]
            assert run["requests"] > 0
            assert run["errors"] == 0
            assert 0 < run["latency_ms"]["p50"] <= run["latency_ms"]["p99"]
        assert result[mode]["paced_50"]["requests"] > 0
    assert result["batching"]["max_batch_size"] == 64
    assert result["no batching"]["max_batch_size"] == 1
    assert result["speedup_at_max_clients"] > 0
    table = "\n".join(http_table({"http": result}))
    assert "| 8 clients: throughput · p50/p99 |" in table


def test_the_drift_tables_report_the_phases_and_the_overhead() -> None:
    from bench.drift import Sample, table
    from bench.report import drift_table

    def sample(documents: int, phase: str, oov_psi: float, firing: float) -> Sample:
        quantities = ("label", "confidence", "length", "oov", "truncation")
        return Sample(
            documents, phase, 300, 0.2, 0.18, 0.5, 0.49,
            {q: (oov_psi if q == "oov" else 0.01) for q in quantities},
            {q: 0.05 for q in quantities},
            {q: (firing if q == "oov" else 0.0) for q in quantities},
        )  # fmt: skip

    samples = [sample(100, "bbc", 0.02, 0), sample(200, "bbc", 0.03, 0), sample(300, "ng", 5.9, 1)]
    rows = table(samples).splitlines()
    assert len(rows) == 4  # header, rule, one row per phase (its last sample)
    assert rows[2].startswith("| bbc | 200 |")
    assert "| none |" in rows[2]
    assert "5.900" in rows[3]
    assert rows[3].endswith("| oov |")
    run = {"saturation": {"msgs_per_s": 1000.0}}
    results = {
        "streams": {"short": {"drift": {"off": [run, run], "on": [run, run], "on_vs_off": 0.98}}}
    }
    text = "\n".join(drift_table(results))
    assert "1,000 / 1,000" in text
    assert "0.98 x" in text
    assert drift_table({"streams": {}}) == []
