"""The peers stage's pure parts: rows, label parsing, the table (no broker, no .venv-peers)."""

from __future__ import annotations

import argparse
import json

from bench.peers import report, stage
from bench.peers.harness import System, output_label


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--max-batch-size", type=int, default=256)
    p.add_argument("--max-wait-ms", type=int, default=50)
    stage.add_arguments(p)
    return p.parse_args(list(argv))


def test_default_rows_are_the_project_twice_the_peers_and_faust_on_the_engine() -> None:
    names = [s.name for s in stage.systems_from(_args())]
    assert names == ["project", "project x2", "quix", "faust", "mlserver", "faust (engine)"]


def test_smoke_runs_one_project_row_and_labels_only() -> None:
    args = _args("--peers-smoke")
    assert [s.name for s in stage.systems_from(args)] == ["project", "quix", "faust", "mlserver"]
    plan = stage.plan_from(args)
    assert plan.smoke
    assert plan.agree == stage.SMOKE_MESSAGES


def test_labels_are_read_from_both_output_formats() -> None:
    assert output_label(json.dumps({"id": "a", "label": "Sports"}).encode()) == "Sports"
    v2 = {
        "id": "a",
        "outputs": [
            {"name": "label", "shape": [1, 1], "datatype": "BYTES", "data": ["World"]},
            {"name": "probabilities", "shape": [1, 4], "datatype": "FP32", "data": [1, 0, 0, 0]},
        ],
    }
    assert output_label(json.dumps(v2).encode()) == "World"


def test_table_has_one_row_per_system_and_the_ratio_to_the_best_peer() -> None:
    def run(rate: float) -> dict[str, object]:
        return {
            "agreement": {"equal": 1000, "of": 1000, "answered": 1000},
            "saturation": {
                "messages": 500,
                "msgs_per_s": rate,
                "cpu_s_per_1000": 1.5,
                "e2e_ms": {"p50": 10.0, "p99": 20.0},
            },
            "paced": {"e2e_ms": {"p50": 5.0, "p99": 9.0}},
            "rss_kib": 1024 * 700,
        }

    results = {
        "plan": {"paced_load": 0.5},
        "runs": {"short": {"project": run(1000.0), "quix": run(100.0), "faust": run(200.0)}},
    }
    lines = report.markdown(results)
    rows = {line.split(" | ")[0].strip("| "): line for line in lines if line.startswith("| ")}
    assert rows["project"].endswith("| 1000/1000 | 5.00 |")
    assert rows["faust"].endswith("| 1.00 |")
    assert rows["quix"].endswith("| 0.50 |")
    assert "700" in rows["quix"]
    assert report.all_agree(results)
    assert System("faust", "engine").name == "faust (engine)"
