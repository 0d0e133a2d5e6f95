"""The FastAPI application: ``/v1/classify``, ``/v1/model``, health and metrics.

Built by :func:`create_app` around one loaded bundle. Requests are validated against the
stream's input schema (:class:`schemas.InputMessage`) and answered in the stream's prediction
format without Kafka coordinates (:class:`schemas.Classification`), with the same label,
confidence, top-k and model version the consumer publishes for the same text. Bad input
gets a 4xx that says what is wrong: 413 (body, text or list too large), 415 (not JSON), 422
(schema, or a text that cannot be tokenised), 401 (API key); never a stack trace.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from swagger_ui_bundle import swagger_ui_path

from api.batching import MicroBatcher, TextFailedError
from api.metrics import ApiMetrics
from api.middleware import BodyLimit, RequestCounting
from api.models import ExplainRequest, ExplanationOut, ModelInfo, WordWeight
from api.settings import API_KEY_HEADER, ApiSettings
from model import Bundle
from model.drift.tracker import DriftTracker
from model.explain import explain_text
from model.reload import ModelWatcher
from schemas import Classification, ClassProbability, InputMessage

#: The page's HTML, CSS and JavaScript, shipped in the package.
STATIC = Path(__file__).resolve().parent / "static"

ClassifyBody = Annotated[
    InputMessage | list[InputMessage],
    Body(description="One input message, or a list of them (the stream's input schema)."),
]


def create_app(
    settings: ApiSettings,
    bundle: Bundle,
    watcher: ModelWatcher | None = None,
    metrics: ApiMetrics | None = None,
) -> FastAPI:
    """The API around ``bundle`` (hot-reloaded through ``watcher`` when given).

    Raises:
        ValueError: the API key file is empty.
    """
    metrics = metrics or ApiMetrics()
    api_key = settings.resolved_api_key()
    drift = None
    if settings.drift_window_documents > 0:
        drift = DriftTracker(settings, metrics.registry, "api")
        drift.serve(bundle)  # the reference gauges from the start
    batcher = MicroBatcher(
        bundle,
        settings.max_batch_size,
        settings.max_wait_ms,
        on_batch=metrics.batch_size.observe,
        take_new_bundle=_reloads(watcher, metrics),
        on_predicted=drift.observe if drift is not None else None,
    )
    metrics.model.info({"version": bundle.version})

    explainer = ThreadPoolExecutor(1, thread_name_prefix="api-explain")  # LIME: one at a time

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        if watcher is not None:
            watcher.start()
        yield
        if watcher is not None:
            watcher.stop()
        await batcher.stop()
        explainer.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="stream-text-classifier",
        summary="Classify texts with the stream's LSTM bundles.",
        version="1",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's own /docs loads Swagger UI from a CDN: see docs() below
        redoc_url=None,
    )
    app.state.batcher = batcher
    app.state.metrics = metrics

    # Dependencies are ``async``: FastAPI runs a plain ``def`` dependency in a worker thread,
    # two thread hops per request that cost more than the model's share at high load.
    async def require_key(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get(API_KEY_HEADER, "")
        if not secrets.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, f"missing or wrong {API_KEY_HEADER} header")

    async def require_json(request: Request) -> None:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise HTTPException(415, f"send application/json, not {kind or 'no content type'}")

    @app.post(
        "/v1/classify",
        response_model=Classification | list[Classification],
        dependencies=[Depends(require_key), Depends(require_json)],
        responses={
            413: {"description": "body, a text or the list too large"},
            415: {"description": "not application/json"},
            422: {"description": "not the input schema, or a text that cannot be tokenised"},
        },
    )
    async def classify(payload: ClassifyBody) -> Response:
        """Classify one input message or a list of them."""
        received = time.perf_counter()
        messages = payload if isinstance(payload, list) else [payload]
        if len(messages) > settings.max_texts_per_request:
            raise HTTPException(
                413,
                f"{len(messages)} inputs; the limit is {settings.max_texts_per_request} "
                "(max_texts_per_request)",
            )
        documents = [m.document for m in messages]
        for i, document in enumerate(documents):
            _require_size(document, settings.max_text_bytes, f"input {i}")
        try:
            used, rows = await batcher.classify(documents)
        except Exception as exc:
            raise HTTPException(503, "the model failed on this request; try again") from exc
        failed = [f"input {i}: {r}" for i, r in enumerate(rows) if isinstance(r, TextFailedError)]
        if failed:
            raise HTTPException(422, f"cannot be tokenised: {'; '.join(failed)}")
        if any(isinstance(r, Exception) for r in rows):  # non-finite model output
            raise HTTPException(503, "the model returned no valid probabilities for this input")
        answers = [
            _classification(used, m, r, settings, received)
            for m, r in zip(messages, rows, strict=True)
            if not isinstance(r, Exception)
        ]
        # Serialised here: the answers are already validated models, so FastAPI need not
        # validate them against response_model again (that documents the schema only).
        if isinstance(payload, list):
            body = b"[" + b",".join(a.model_dump_json().encode() for a in answers) + b"]"
        else:
            body = answers[0].model_dump_json().encode()
        return Response(body, media_type="application/json")

    @app.post(
        "/v1/explain",
        response_model=ExplanationOut,
        dependencies=[Depends(require_key), Depends(require_json)],
        responses={
            413: {"description": "the text or num_samples too large"},
            422: {"description": "not the input schema, an unknown label or no words"},
            503: {"description": "explanations busy past explain_timeout_s"},
        },
    )
    async def explain(request: ExplainRequest) -> ExplanationOut:
        """Which words pushed the prediction toward its class (LIME, bounded samples)."""
        document = request.document
        _require_size(document, settings.max_text_bytes, "the input")
        if request.num_samples > settings.explain_max_samples:
            raise HTTPException(
                413,
                f"num_samples {request.num_samples} is over {settings.explain_max_samples} "
                "(explain_max_samples)",
            )
        served = batcher.bundle
        began = time.perf_counter()
        job = asyncio.get_running_loop().run_in_executor(
            explainer,
            lambda: explain_text(
                served, document, request.label, request.num_features, request.num_samples
            ),
        )
        try:
            result = await asyncio.wait_for(asyncio.shield(job), settings.explain_timeout_s)
        except TimeoutError:
            raise HTTPException(503, "explanations are busy; try again") from None
        except ValueError as exc:  # unknown label, a text without words
            raise HTTPException(422, str(exc)) from None
        return ExplanationOut(
            id=request.id,
            label=result.label,
            probability=result.probability,
            weights=[WordWeight(word=w, weight=v) for w, v in result.weights],
            model_version=served.version,
            num_samples=request.num_samples,
            seconds=round(time.perf_counter() - began, 3),
        )

    @app.get("/v1/model", response_model=ModelInfo, dependencies=[Depends(require_key)])
    async def model_info() -> ModelInfo:
        """The bundle being served: version, labels, preprocessing, held-out scores."""
        served = batcher.bundle
        manifest = served.manifest
        scores = _held_out(served)
        return ModelInfo(
            version=manifest.version,
            created_at=manifest.created_at,
            labels=manifest.labels,
            preprocessing={
                "text": manifest.text.model_dump(),
                "sequence": manifest.sequence.model_dump(),
                "num_words": manifest.num_words,
            },
            network=manifest.network.model_dump(),
            held_out=scores,
        )

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        """The ask-a-question page."""
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """The OpenAPI page, its script and style served from the package (no CDN)."""
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="stream-text-classifier API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        ok = batcher.running
        return JSONResponse({"status": "ok" if ok else "batching loop stopped"}, 200 if ok else 503)

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        ok = batcher.running
        body = {"status": "ok" if ok else "not ready", "model_version": batcher.bundle.version}
        return JSONResponse(body, 200 if ok else 503)

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def schema_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        lines = [
            f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
            for e in exc.errors()
        ]
        return JSONResponse({"detail": lines[:20]}, 422)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:  # no stack traces
        return JSONResponse({"detail": "internal error"}, 500)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["content-type", API_KEY_HEADER],
        )
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RequestCounting, metrics=metrics)  # outermost: counts 413s too
    return app


def _require_size(document: str, limit: int, where: str) -> None:
    """Raise 413 when ``document`` is over ``limit`` UTF-8 bytes (``max_text_bytes``)."""
    size = len(document.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise HTTPException(
            413,
            f"{where}: title + text is {size} bytes in UTF-8; the limit is {limit} bytes "
            "(max_text_bytes)",
        )


def _classification(
    bundle: Bundle, message: InputMessage, row: Any, settings: ApiSettings, received: float
) -> Classification:
    top = bundle.top_k(row[None, :], settings.top_k)[0]
    return Classification(
        id=message.id,
        label=top[0][0],
        confidence=top[0][1],  # rows come clipped to [0, 1] (model.probabilities)
        top_k=[ClassProbability(label=k, probability=p) for k, p in top],
        model_version=bundle.version,
        produced_at=datetime.now(UTC),
        latency_ms=round((time.perf_counter() - received) * 1000, 3),
        low_confidence=top[0][1] < settings.low_confidence_threshold,
    )


def _held_out(bundle: Bundle) -> dict[str, float | int | None]:
    try:
        scores = json.loads((bundle.path / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"accuracy": None, "macro_f1": None, "n": None}
    return {k: scores.get(k) for k in ("accuracy", "macro_f1", "n")}


def _reloads(watcher: ModelWatcher | None, metrics: ApiMetrics) -> Callable[[], Bundle | None]:
    def take() -> Bundle | None:
        if watcher is None:
            return None
        new: Bundle | None = watcher.take()
        if new is not None:
            metrics.model.info({"version": new.version})
            metrics.model_reloads.labels("loaded").inc()
        return new

    return take
