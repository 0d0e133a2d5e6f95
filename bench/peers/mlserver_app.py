"""MLServer peer, the server: ``mlserver start`` in Kafka mode with adaptive batching.

Writes ``settings.json`` (``kafka_enabled``, ``kafka_servers``, input/output topics; REST,
gRPC and metrics on free ports) and ``model-settings.json`` (the custom runtime
:class:`bench.peers.mlserver_model.TextClassifier`, the bundle as ``uri``,
``max_batch_size``/``max_batch_time``) into a temporary folder, then replaces itself with
``mlserver start <folder>`` (same process id). Everything else is MLServer's default: one
parallel inference worker process, the Kafka consumer without a group reading new records.
Input records are V2 ``InferenceRequest`` JSON with the model named in the
``mlserver-model`` header; outputs are V2 ``InferenceResponse`` JSON keyed like the input.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
from pathlib import Path

from bench.peers.common import READY_LINE, peer_parser

#: The model's name in MLServer (the ``mlserver-model`` header of every request).
MODEL_NAME = "text-classifier"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_settings(folder: Path, argv: list[str] | None = None) -> None:
    """Write MLServer's ``settings.json`` and ``model-settings.json`` for these flags."""
    parser = peer_parser("python -m bench.peers.mlserver_app", __doc__.splitlines()[0])
    args = parser.parse_args(argv)
    settings = {
        "debug": False,
        "kafka_enabled": True,
        "kafka_servers": args.bootstrap_servers,
        "kafka_topic_input": args.input_topic,
        "kafka_topic_output": args.output_topic,
        "host": "127.0.0.1",
        "http_port": _free_port(),
        "grpc_port": _free_port(),
        "metrics_port": _free_port(),
    }
    model = {
        "name": MODEL_NAME,
        "implementation": "bench.peers.mlserver_model.TextClassifier",
        "max_batch_size": args.max_batch_size,
        "max_batch_time": args.max_wait_ms / 1000,
        "parameters": {
            "uri": str(Path(args.bundle).resolve()),
            "extra": {"inference": args.inference},
        },
    }
    (folder / "settings.json").write_text(json.dumps(settings, indent=2))
    (folder / "model-settings.json").write_text(json.dumps(model, indent=2))


def main(argv: list[str] | None = None) -> int:
    """Write the settings and exec ``mlserver start`` (does not return on success)."""
    folder = Path(tempfile.mkdtemp(prefix="mlserver-peer-"))
    write_settings(folder, argv)
    exe = Path(sys.executable).with_name("mlserver")
    repo = str(Path(__file__).resolve().parents[2])
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))
    print(READY_LINE, file=sys.stderr, flush=True)
    os.dup2(2, 1)  # MLServer logs to stdout: into the harness's log file with the rest
    os.execv(str(exe), [str(exe), "start", str(folder)])


if __name__ == "__main__":
    sys.exit(main())
