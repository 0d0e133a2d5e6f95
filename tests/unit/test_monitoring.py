"""deploy/monitoring: every metric the rules and the dashboard query is really exported."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry

from api.metrics import ApiMetrics
from consumer.feedback import FeedbackMetrics
from consumer.metrics import Metrics
from consumer.shadow import ShadowMetrics
from model.drift import DriftSettings, ReferenceProfile
from model.drift.tracker import DriftTracker

MONITORING = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"
METRIC = re.compile(r"\b(classifier_[a-z0-9_]+)\b")
GROUPING = re.compile(r"\bby \(([^)]*)\)")
#: Debian's ``prometheus`` package ships it; ``.ci/run`` extracts it (no Prometheus server).
PROMTOOL_HINT = (
    "promtool not found: apt-get download prometheus && dpkg-deb -x prometheus_*.deb x "
    "&& cp x/usr/bin/promtool /usr/local/bin/ (what .ci/run does)"
)
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _sample_names(registry: CollectorRegistry) -> set[str]:
    names: set[str] = set()
    for family in registry.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
        names.update(s.name for s in family.samples)
    return names


def _drift_labels() -> dict[str, set[str]]:
    """Label names of every drift series, from a tracker that really counted documents."""
    registry = CollectorRegistry()
    tracker = DriftTracker(DriftSettings(drift_min_documents=1), registry, "test")
    rng = np.random.default_rng(0)
    ids = [list(rng.integers(1, 30, size=12)) for _ in range(20)]
    probabilities = rng.dirichlet(np.ones(3), size=20).astype(np.float32)
    profile = ReferenceProfile.build(ids, probabilities, ["a", "b", "c"], 16, "test")

    class Model:
        version, labels, drift_profile = "v1", ["a", "b", "c"], profile

    tracker.observe(Model(), ids, probabilities)
    labels: dict[str, set[str]] = {}
    for family in registry.collect():
        for s in family.samples:
            labels.setdefault(s.name, set()).update(s.labels)
    return labels


def _exported() -> set[str]:
    consumer, api = CollectorRegistry(), CollectorRegistry()
    Metrics(consumer)
    ShadowMetrics(consumer)
    FeedbackMetrics(consumer)
    DriftTracker(DriftSettings(), consumer, "test")
    ApiMetrics(api)
    return _sample_names(consumer) | _sample_names(api)


def _rules() -> list[dict[str, Any]]:
    document = yaml.safe_load((MONITORING / "prometheus-rules.yaml").read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _dashboard_queries() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    queries += [
        v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"
    ]
    return queries


def _queries() -> list[str]:
    return [rule["expr"] for rule in _rules()] + _dashboard_queries()


@pytest.mark.parametrize("query", _queries())
def test_every_queried_metric_is_exported(query: str) -> None:
    names = METRIC.findall(query)
    assert names, f"no classifier metric in {query!r}"
    missing = sorted(set(names) - _exported())
    assert not missing, f"{query!r} queries {missing}, which no service exports"


def test_the_drift_queries_group_by_labels_the_drift_series_carry() -> None:
    labels = _drift_labels()
    checked = 0
    for query in _queries():
        drift = [n for n in METRIC.findall(query) if n in labels]
        if not drift:
            continue
        carried = set.union(*(labels[n] for n in drift))
        for grouping in GROUPING.findall(query):
            wanted = {g.strip() for g in grouping.split(",")}
            assert wanted <= carried, f"{query!r} groups by {wanted - carried}"
            checked += 1
    assert checked >= 8


def test_the_rules_are_complete_alerting_rules() -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} >= {"ClassifierDrift", "ClassifierLiveAccuracyLow"}
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert rule["annotations"]["summary"]
        assert rule["expr"].count("(") == rule["expr"].count(")")


def test_the_dashboard_panels_are_well_formed() -> None:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


@pytest.fixture(scope="module")
def promtool() -> str:
    """Prometheus's own rule checker; CI fails without it, a developer's run skips."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(PROMTOOL_HINT)
        pytest.skip(PROMTOOL_HINT)
    return found


def _promtool(promtool: str, *args: str, cwd: Path = MONITORING) -> str:
    run = subprocess.run(
        [promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def test_promtool_accepts_the_rules(promtool: str) -> None:
    assert "SUCCESS: 7 rules found" in _promtool(
        promtool, "check", "rules", "prometheus-rules.yaml"
    )


def test_the_alerts_fire_and_stay_quiet_on_synthetic_series(promtool: str) -> None:
    # prometheus-rules.test.yaml: the drift alert of one worker of two, live accuracy per
    # version, OOV rate vs reference, dead-letter share, the registry down then back.
    assert "SUCCESS" in _promtool(promtool, "test", "rules", "prometheus-rules.test.yaml")


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path: Path) -> None:
    # promtool parses PromQL when it checks recording rules: one rule per panel query, with
    # Grafana's variables as Grafana would substitute them.
    grafana = {"$__rate_interval": "5m", "$model_version": ".*"}
    rules = []
    for n, query in enumerate(_dashboard_queries()):
        if query.startswith("label_values("):
            continue  # a Grafana function, not PromQL
        for variable, value in grafana.items():
            query = query.replace(variable, value)
        rules.append({"record": f"dashboard:query_{n}", "expr": query})
    assert len(rules) >= 15
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in _promtool(
        promtool, "check", "rules", str(path), cwd=tmp_path
    )
