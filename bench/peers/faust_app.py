"""faust-streaming peer: an agent taking micro-batches with ``stream.take(max_, within=...)``.

As faust's docs teach batching: ``async for values in stream.take(256, within=0.05)``, the
model once per batch, then ``await topic.send(...)`` per prediction. JSON values, defaults
otherwise (at-least-once, offsets committed every 2.8 s); the web server is off (no port).
Runs in ``.venv-peers``::

    .venv-peers/bin/python -m bench.peers.faust_app --bundle B --bootstrap-servers S \
        --input-topic I --output-topic O --group-id G [--inference keras|engine]
"""

from __future__ import annotations

import sys
from typing import Any

from bench.peers.common import READY_LINE, Classifier, peer_parser


def main(argv: list[str] | None = None) -> int:
    """Run a faust worker until SIGTERM/SIGINT; returns its exit code."""
    args = peer_parser("python -m bench.peers.faust_app", __doc__.splitlines()[0]).parse_args(argv)
    import faust

    classifier = Classifier(args.bundle, args.inference)
    app = faust.App(
        args.group_id,
        broker=f"kafka://{args.bootstrap_servers}",
        value_serializer="json",
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    source = app.topic(args.input_topic)
    sink = app.topic(args.output_topic)
    max_batch, within_s = args.max_batch_size, args.max_wait_ms / 1000

    @app.agent(source)  # type: ignore[untyped-decorator]
    async def classify(stream: Any) -> None:
        async for values in stream.take(max_batch, within=within_s):
            for prediction in classifier.classify(values):
                await sink.send(key=prediction["id"], value=prediction)

    print(READY_LINE, file=sys.stderr, flush=True)
    worker = faust.Worker(app, loglevel="WARNING")
    worker.execute_from_commandline()
    return 0


if __name__ == "__main__":
    sys.exit(main())
