"""``python -m api``: classify texts over HTTP (uvicorn + FastAPI) with a training bundle.

Exit codes: 0 after a graceful stop (SIGTERM/SIGINT); 2 for a start-up error (bad setting,
missing or corrupt bundle, empty API key file).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ INFO lines out

import sys
from collections.abc import Sequence
from pathlib import Path

from api.settings import ApiSettings
from model.extras import missing_extra
from schemas.settings import parse_command_line


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until stopped; returns the exit code (see module docstring)."""
    settings = parse_command_line(ApiSettings, argv)
    if isinstance(settings, str):
        print(settings, file=sys.stderr)
        return 2
    problem = missing_extra("api", ("fastapi", "uvicorn", "swagger_ui_bundle", "lime"))
    if problem is not None:
        print(f"cannot start: {problem}", file=sys.stderr)
        return 2
    import uvicorn

    from api.app import create_app
    from api.metrics import ApiMetrics
    from model import Bundle, BundleError, load_bundle
    from model.heap import freeze_imports
    from model.reload import ModelWatcher

    freeze_imports()  # full collections skip TensorFlow's objects: no ~200 ms pauses

    def load_warm(path: Path) -> Bundle:
        bundle = load_bundle(path)
        bundle.warmup()
        return bundle

    metrics = ApiMetrics()
    try:
        bundle = load_warm(settings.bundle)
        watcher = None
        if settings.reload_interval_s > 0 and ModelWatcher.watchable(settings.bundle):
            watcher = ModelWatcher(
                settings.bundle,
                bundle.path,
                load_warm,
                settings.reload_interval_s,
                on_refused=metrics.model_reloads.labels("refused").inc,
            )
        app = create_app(settings, bundle, watcher, metrics)
    except (BundleError, OSError, ValueError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    return 0


def cli() -> None:
    """Console entry point (``stc-api``)."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
