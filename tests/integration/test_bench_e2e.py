"""Stage 4 of ``python -m bench`` (end to end through the real broker) on a tiny input.

Checks that the benchmark's broker stage works (about half a minute); the numbers it
measures on a tiny input under CI are not performance results.
"""

from __future__ import annotations

from pathlib import Path

from bench import e2e
from bench.streams import load_stream


def test_end_to_end_stage_measures_throughput_latency_and_memory(
    kafka_bootstrap: str, bbc_bundle: Path, data_dir: Path, tmp_path: Path
) -> None:
    texts = load_stream("short", data_dir, 1).distinct
    result = e2e.run_stream(
        kafka_bootstrap,
        bbc_bundle,
        "short",
        texts,
        messages=400,
        warmup=64,
        paced_loads=[0.5],
        paced_seconds=2.0,
        max_batch_size=256,
        max_wait_ms=50,
        log_dir=tmp_path,
    )
    assert result["consumer_exit_code"] == 0
    saturation = result["saturation"]
    assert saturation["messages"] == 400
    assert saturation["msgs_per_s"] > 0
    assert saturation["e2e_ms"]["p50"] <= saturation["e2e_ms"]["p99"]
    (paced,) = result["paced"]
    assert paced["messages"] >= 1
    assert paced["e2e_ms"]["p99"] > 0
    assert result["memory_kb"]["VmHWM"] > 0


def test_wire_format_stage_runs_avro_beside_json(
    kafka_bootstrap: str, schema_registry_url: str, bbc_bundle: Path, data_dir: Path, tmp_path: Path
) -> None:
    from bench import formats

    texts = load_stream("short", data_dir, 1).distinct
    result = formats.run(
        kafka_bootstrap,
        bbc_bundle,
        "short",
        texts,
        messages=300,
        warmup=32,
        max_batch_size=256,
        log_dir=tmp_path,
        registry_url=schema_registry_url,
    )
    for fmt in ("json", "avro"):
        assert result[fmt]["consumer_exit_code"] == 0
        assert result[fmt]["saturation"]["messages"] == 300  # every prediction read back
    assert "--input-format" in result["avro"]["consumer_args"]
    assert result["avro_vs_json"] > 0
