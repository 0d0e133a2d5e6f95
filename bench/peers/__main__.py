"""``python -m bench.peers``: only the peers stage (the project's consumer and the peer frameworks).

Examples::

    python -m bench.peers --data-dir ../shared/datasets --bootstrap-servers 127.0.0.1:9092
    python -m bench.peers --data-dir ../shared/datasets --peers-smoke      # CI: labels only

Exit code 0 when every system ran and every answered label equals the project's, 1 when
a system failed or disagreed, 2 for bad options or data.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = Path("artifacts") / "bench" / "peers"


def main(argv: list[str] | None = None) -> int:
    """Run the stage, print the table, save ``<out>.md`` and ``<out>.json``."""
    from bench.peers import stage

    p = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("CLASSIFIER_DATA_DIR"))
    p.add_argument("--bundle", type=Path, help="default: the benchmark's bundle (trained once)")
    p.add_argument("--bootstrap-servers", help="default: $KAFKA_BOOTSTRAP_SERVERS or a local one")
    p.add_argument("--streams", default="short,long")
    p.add_argument("--quick", action="store_true", help="tiny sizes")
    p.add_argument("--max-batch-size", type=int, default=256)
    p.add_argument("--max-wait-ms", type=int, default=0, help="the project's --max-wait-ms")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="writes <out>.md and <out>.json")
    stage.add_arguments(p)
    args = p.parse_args(argv)
    if not args.data_dir:
        print("error: pass --data-dir (or set CLASSIFIER_DATA_DIR)", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from bench import kafka_io
    from bench.peers import report
    from bench.streams import DEFAULT_BUNDLE_DIR, DataError, ensure_bundle, load_stream

    data_dir = Path(args.data_dir).resolve()
    try:
        stage.systems_from(args)
        bundle = (args.bundle or ensure_bundle(data_dir, REPO / DEFAULT_BUNDLE_DIR)).resolve()
        streams = {
            s: load_stream(s, data_dir, 1).distinct
            for s in (x.strip() for x in args.streams.split(","))
            if s
        }
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    began = time.monotonic()

    def say(message: str) -> None:
        print(f"» [{time.monotonic() - began:6.0f} s] {message}", file=sys.stderr, flush=True)

    try:
        with kafka_io.broker(args.bootstrap_servers, REPO / "artifacts" / "bench") as bootstrap:
            results = stage.run_stage(
                args, bootstrap, bundle, streams, REPO / "artifacts" / "bench" / "logs", say
            )
    except kafka_io.E2EError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    results["command"] = "python -m bench.peers " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    results["bundle"] = str(bundle)
    table = "\n".join(report.markdown(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(f"`{results['command']}`\n\n{table}\n", encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(table)
    return 0 if report.all_agree(results) else 1


if __name__ == "__main__":
    sys.exit(main())
