"""Quix Streams peer: ``Application`` + ``StreamingDataFrame.apply`` per message + ``to_topic``.

As Quix Streams' docs teach a model in a pipeline: a JSON input topic, a dataframe that
applies the model to each message, and ``to_topic`` for the output. Defaults otherwise
(at-least-once, commit every 5 s). Runs in ``.venv-peers``::

    .venv-peers/bin/python -m bench.peers.quix_app --bundle B --bootstrap-servers S \
        --input-topic I --output-topic O --group-id G [--inference keras|engine]
"""

from __future__ import annotations

import sys

from bench.peers.common import READY_LINE, Classifier, peer_parser


def main(argv: list[str] | None = None) -> int:
    """Run the application until SIGTERM/SIGINT; returns 0."""
    args = peer_parser("python -m bench.peers.quix_app", __doc__.splitlines()[0]).parse_args(argv)
    from quixstreams import Application

    classifier = Classifier(args.bundle, args.inference)
    app = Application(
        broker_address=args.bootstrap_servers,
        consumer_group=args.group_id,
        auto_offset_reset="earliest",
        loglevel="WARNING",
    )
    source = app.topic(args.input_topic, value_deserializer="json")
    sink = app.topic(args.output_topic, value_serializer="json")
    sdf = app.dataframe(source)
    sdf = sdf.apply(classifier.classify_one)
    sdf.to_topic(sink)
    print(READY_LINE, file=sys.stderr, flush=True)
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
