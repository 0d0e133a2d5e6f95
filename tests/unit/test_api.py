"""The HTTP API over a real small bundle (no mocked model), served by uvicorn on localhost."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from api.app import create_app
from api.metrics import ApiMetrics
from api.settings import ApiSettings
from model import Bundle, load_bundle
from tests.integration.streaming import held_out_articles
from tests.net import free_port, metric_value

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bundle(bbc_bundle: Path) -> Bundle:
    served = load_bundle(bbc_bundle)
    served.warmup()
    return served


@pytest.fixture(scope="module")
def server(bbc_bundle: Path, bundle: Bundle) -> Iterator[tuple[str, FastAPI]]:
    """``python -m api``'s app on a free port, batching texts that arrive within 30 ms."""
    settings = ApiSettings(
        bundle=bbc_bundle, max_wait_ms=30, max_batch_size=64, max_texts_per_request=8,
        max_body_bytes=200_000, max_text_bytes=50_000, reload_interval_s=0,
    )  # fmt: skip
    app = create_app(settings, bundle)
    port = free_port()
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uv.started
    yield f"http://127.0.0.1:{port}", app
    uv.should_exit = True
    thread.join(10)


def test_answers_equal_the_bundle_on_held_out_articles(
    server: tuple[str, FastAPI], bundle: Bundle, bbc_bundle: Path, bbc_csv: Path
) -> None:
    url, _ = server
    articles = held_out_articles(bbc_bundle, bbc_csv)[:8]
    body = [{"id": i, "text": t} for i, t, _ in articles]
    response = httpx.post(f"{url}/v1/classify", json=body, timeout=30)
    assert response.status_code == 200, response.text
    answers = response.json()
    expected = bundle.predict_proba([t for _, t, _ in articles])
    assert [a["id"] for a in answers] == [a[0] for a in articles]
    for answer, probabilities in zip(answers, expected, strict=True):
        assert answer["label"] == bundle.labels[int(np.argmax(probabilities))]
        assert abs(answer["confidence"] - float(probabilities.max())) < 1e-5
        assert len(answer["top_k"]) == 3
        assert answer["model_version"] == bundle.version
        assert "source" not in answer  # no Kafka coordinates over HTTP
    one = httpx.post(f"{url}/v1/classify", json=body[0], timeout=30).json()
    assert one["id"] == articles[0][0]
    assert one["label"] == answers[0]["label"]


def test_concurrent_requests_are_merged_into_one_model_call(
    server: tuple[str, FastAPI],
) -> None:
    url, app = server
    registry = app.state.metrics.registry

    def sample(name: str) -> float:
        return float(registry.get_sample_value(name) or 0.0)

    calls, texts = (
        sample("classifier_api_batch_size_count"),
        sample("classifier_api_batch_size_sum"),
    )
    with ThreadPoolExecutor(16) as pool:
        codes = list(
            pool.map(
                lambda i: (
                    httpx.post(
                        f"{url}/v1/classify", json={"id": str(i), "text": "shares rose"}, timeout=30
                    ).status_code
                ),
                range(16),
            )
        )
    assert codes == [200] * 16
    assert sample("classifier_api_batch_size_sum") - texts == 16
    assert sample("classifier_api_batch_size_count") - calls < 16  # some requests shared a call


@pytest.mark.parametrize(
    ("content", "headers", "status", "says"),
    [
        (b"hello", {"content-type": "text/plain"}, 415, "application/json"),
        (b'{"id": 7, "text": "x"}', {}, 422, "id"),
        (b'{"id": "a", "text": "  "}', {}, 422, "text"),
        (b'{"id": "a", "text": ', {}, 422, "JSON"),
        (b'{"id": "a", "text": "\\ud800"}', {}, 422, "text"),
        (json.dumps([{"id": str(i), "text": "x"} for i in range(9)]).encode(), {}, 413, "9 inputs"),
        (json.dumps({"id": "a", "text": "x" * 60_000}).encode(), {}, 413, "max_text_bytes"),
        (json.dumps({"id": "a", "text": "x" * 300_000}).encode(), {}, 413, "max_body_bytes"),
        (
            b'{"id": "a", "text": "x", "metadata": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            {},
            400,
            "body",
        ),
    ],
)
def test_every_bad_input_gets_a_4xx_that_says_what_is_wrong(
    server: tuple[str, FastAPI], content: bytes, headers: dict[str, str], status: int, says: str
) -> None:
    url, _ = server
    response = httpx.post(
        f"{url}/v1/classify",
        content=content,
        headers={"content-type": "application/json", **headers},
        timeout=30,
    )
    assert response.status_code == status, response.text
    assert says in response.text
    assert "Traceback" not in response.text
    assert str(REPO) not in response.text  # no internal paths


def test_model_health_and_metrics_endpoints(server: tuple[str, FastAPI], bundle: Bundle) -> None:
    url, _ = server
    model = httpx.get(f"{url}/v1/model", timeout=10).json()
    assert model["version"] == bundle.version
    assert model["labels"] == bundle.labels
    assert model["preprocessing"]["sequence"]["max_len"] == 120
    assert 0 < model["held_out"]["accuracy"] <= 1
    assert 0 < model["held_out"]["macro_f1"] <= 1
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{url}/readyz", timeout=10).json()["model_version"] == bundle.version
    text = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'classifier_api_requests_total{route="/v1/model",status="200"}' in text
    assert f'classifier_model_info{{version="{bundle.version}"}} 1.0' in text
    assert "classifier_api_request_seconds_bucket" in text
    assert httpx.get(f"{url}/openapi.json", timeout=10).json()["paths"]["/v1/classify"]


def test_the_drift_window_counts_what_the_api_predicted(
    bbc_bundle: Path, bundle: Bundle, bbc_csv: Path
) -> None:
    articles = held_out_articles(bbc_bundle, bbc_csv)[:24]
    settings = ApiSettings(
        bundle=bbc_bundle, reload_interval_s=0, drift_window_documents=24, drift_min_documents=20
    )
    with TestClient(create_app(settings, bundle)) as client:
        for start in (0, 8, 16):
            body = [{"id": i, "text": t} for i, t, _ in articles[start : start + 8]]
            assert client.post("/v1/classify", json=body).status_code == 200
        text = client.get("/metrics").text
    ids = [bundle.token_ids(t) for _, t, _ in articles]
    oov_rate = sum(i.count(1) for i in ids) / sum(len(i) for i in ids)
    version = {"model_version": bundle.version}
    assert metric_value(text, "classifier_drift_window_documents", **version) == 24
    live = metric_value(text, "classifier_text_oov_rate", **version, window="live")
    assert live == pytest.approx(oov_rate, rel=1e-9)
    profile = bundle.drift_profile
    assert profile is not None
    reference = metric_value(text, "classifier_text_oov_rate", **version, window="reference")
    assert reference == pytest.approx(profile.oov_tokens / profile.tokens, rel=1e-9)
    assert metric_value(text, "classifier_drift_psi", **version, quantity="oov") >= 0


def test_an_api_key_guards_v1_but_not_health(
    bbc_bundle: Path, bundle: Bundle, tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("s3cret\n")
    settings = ApiSettings(bundle=bbc_bundle, api_key_file=key_file, reload_interval_s=0)
    with TestClient(create_app(settings, bundle)) as client:
        body = {"id": "a", "text": "shares rose"}
        assert client.post("/v1/classify", json=body).status_code == 401
        wrong = client.post("/v1/classify", json=body, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401
        right = client.post("/v1/classify", json=body, headers={"X-API-Key": "s3cret"})
        assert right.status_code == 200
        assert client.get("/healthz").status_code == 200
        assert client.get("/metrics").status_code == 200


def test_bad_settings_stop_at_start_up_naming_the_setting(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "api", "--bundle", str(tmp_path / "missing"), "--port", "-1"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "bundle" in proc.stderr
    assert "does not exist" in proc.stderr
    assert "port" in proc.stderr


def test_explain_names_words_of_the_text_that_pushed_the_class(
    server: tuple[str, FastAPI], bundle: Bundle, bbc_bundle: Path, bbc_csv: Path
) -> None:
    url, _ = server
    text = held_out_articles(bbc_bundle, bbc_csv)[0][1][:2000]
    body = {"id": "e1", "text": text, "num_features": 6, "num_samples": 200}
    response = httpx.post(f"{url}/v1/explain", json=body, timeout=60)
    assert response.status_code == 200, response.text
    why = response.json()
    probabilities = bundle.predict_proba([text])[0]
    assert why["label"] == bundle.labels[int(probabilities.argmax())]
    assert len(why["weights"]) == 6
    assert all(w["word"] in text for w in why["weights"])
    weights = [w["weight"] for w in why["weights"]]
    assert weights == sorted(weights, reverse=True)
    assert why["model_version"] == bundle.version
    too_many = httpx.post(f"{url}/v1/explain", json={**body, "num_samples": 5000}, timeout=10)
    assert too_many.status_code == 413
    assert "explain_max_samples" in too_many.text
    unknown = httpx.post(f"{url}/v1/explain", json={**body, "label": "weather"}, timeout=60)
    assert unknown.status_code == 422
    assert "unknown label" in unknown.text


def test_the_page_and_the_openapi_page_need_nothing_from_the_internet(
    server: tuple[str, FastAPI],
) -> None:
    url, _ = server
    page = httpx.get(url, timeout=10)
    assert page.status_code == 200
    assert "<textarea" in page.text
    docs = httpx.get(f"{url}/docs", timeout=10)
    assert docs.status_code == 200
    for html in (page.text, docs.text):
        assert "https://" not in html  # no CDN: every asset comes from this server
        assert "http://" not in html
    for asset in ("/static/app.js", "/static/style.css", "/docs-assets/swagger-ui-bundle.js"):
        assert httpx.get(f"{url}{asset}", timeout=10).status_code == 200, asset


def test_schema_driven_requests_never_get_a_5xx(server: tuple[str, FastAPI]) -> None:
    """schemathesis generates requests from the served OpenAPI document (bounded for CI)."""
    url, _ = server
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    results = list(schema.get_all_operations())
    assert all(isinstance(r, Ok) for r in results), results  # the document itself is valid
    operations = [r.ok() for r in results if isinstance(r, Ok)]
    assert {f"{o.method.upper()} {o.path}" for o in operations} >= {
        "POST /v1/classify",
        "POST /v1/explain",
        "GET /v1/model",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            if isinstance(case.body, dict) and "num_samples" in case.body:
                case.body["num_samples"] = min(int(case.body["num_samples"]), 100)  # keep it fast
            response = case.call(base_url=url, timeout=60)
            assert response.status_code < 500, (case.method, case.path, case.body, response.text)

        check()


def test_new_bundle_versions_are_hot_reloaded_and_corrupt_ones_refused(
    bbc_bundle: Path, tmp_path: Path
) -> None:
    from model.reload import ModelWatcher
    from tests.integration.streaming import model_dir_serving, publish_version

    model_dir = tmp_path / "models"
    original = model_dir_serving(bbc_bundle, model_dir)
    settings = ApiSettings(bundle=model_dir, reload_interval_s=0.2)
    served = load_bundle(model_dir)
    metrics = ApiMetrics()
    refused = metrics.model_reloads.labels("refused")
    watcher = ModelWatcher(model_dir, served.path, load_bundle, 0.2, on_refused=refused.inc)
    body = {"id": "a", "text": "shares rose"}

    def version_after(seconds: float, client: TestClient) -> str:
        deadline = time.monotonic() + seconds
        version = ""
        while time.monotonic() < deadline:
            version = str(client.post("/v1/classify", json=body).json()["model_version"])
            time.sleep(0.2)
        return version

    with TestClient(create_app(settings, served, watcher, metrics)) as client:
        assert client.post("/v1/classify", json=body).json()["model_version"] == original.name
        publish_version(model_dir, original, "v-corrupt", corrupt=True)
        assert version_after(3, client) == original.name  # the corrupt version never serves
        assert (
            metrics.registry.get_sample_value(
                "classifier_model_reloads_total", {"outcome": "refused"}
            )
            == 1
        )
        publish_version(model_dir, original, "v-next")
        assert version_after(5, client) == "v-next"
        assert client.get("/v1/model").json()["version"] == "v-next"
        assert 'version="v-next"' in client.get("/metrics").text
