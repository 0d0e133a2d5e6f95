"""``python -m bench``: run the benchmark, print the table, save it as markdown and JSON.

Examples::

    python -m bench --data-dir ../shared/datasets                       # the full run
    python -m bench --data-dir ../shared/datasets --quick --no-e2e      # CI smoke test
    python -m bench --data-dir ../shared/datasets --no-cpu --no-http --processes 1,2
    python -m bench --data-dir ../shared/datasets --no-cpu --no-http --no-restart --no-reload \
        --processes 1,2 --peers quix,faust,mlserver    # the peer frameworks' table
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("artifacts") / "bench" / "results"
QUICK_BUNDLE_DIR = Path("artifacts") / "bench" / "model-quick"


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "--data-dir",
        default=os.environ.get("CLASSIFIER_DATA_DIR"),
        help="folder holding ag_news/ and bbc/ (default $CLASSIFIER_DATA_DIR)",
    )
    p.add_argument("--messages", type=int, default=50_000, help="messages per stream")
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output path prefix: writes <out>.md and <out>.json (default %(default)s)",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI: checks that it works)")
    p.add_argument("--bundle", type=Path, help="serve this bundle instead of training one")
    p.add_argument("--epochs", type=int, default=1, help="training epochs of the bench bundle")
    p.add_argument("--streams", default="short,long", help="comma-separated: short,long")
    p.add_argument(
        "--no-e2e",
        action="store_true",
        help="skip every stage that needs a broker (4, restart, reload)",
    )
    p.add_argument(
        "--processes",
        default="1",
        help="stage 4 consumer processes, comma-separated, run side by side (e.g. 1,2)",
    )
    p.add_argument(
        "--no-restart",
        action="store_true",
        help="skip the restart-to-first-batch stage (static vs dynamic membership)",
    )
    p.add_argument(
        "--restart-backlog", type=int, default=20_000, help="backlog at the restart stage's kill"
    )
    p.add_argument(
        "--no-reload", action="store_true", help="skip the model-reload-across-workers stage"
    )
    p.add_argument(
        "--reload-interval-s", type=float, default=5.0, help="reload stage --reload-interval-s"
    )
    p.add_argument(
        "--no-formats",
        action="store_true",
        help="skip the wire-format stage (Avro through a Schema Registry vs plain JSON)",
    )
    p.add_argument(
        "--schema-registry-url",
        help="the formats stage's registry (default: start a local Apicurio one)",
    )
    p.add_argument(
        "--no-drift",
        action="store_true",
        help="skip the drift-signals stage (saturated drain with them off and on)",
    )
    p.add_argument("--no-cpu", action="store_true", help="skip stages 1-3 and the peak")
    p.add_argument(
        "--no-http", action="store_true", help="skip the HTTP stage (python -m api under wrk)"
    )
    p.add_argument("--http-seconds", type=float, default=8.0, help="length of an HTTP run")
    p.add_argument("--bootstrap-servers", help="use this broker (default: start a local one)")
    p.add_argument("--naive-sample", type=int, default=200, help="messages for stage 1")
    p.add_argument("--batch-size", type=int, default=256, help="stage 2/3 batch size")
    p.add_argument("--max-batch-size", type=int, default=256, help="consumer --max-batch-size")
    p.add_argument("--max-wait-ms", type=int, default=0, help="consumer --max-wait-ms")
    p.add_argument(
        "--consumer-args",
        default="",
        help="more consumer flags, e.g. '--max-batches-in-flight 1' (shell-quoted)",
    )
    p.add_argument("--warmup", type=int, default=2048, help="stage 4 warm-up messages")
    p.add_argument(
        "--paced", default="0.5", help="stage 4 paced loads, fractions of saturation (0.5,0.9)"
    )
    p.add_argument("--paced-seconds", type=float, default=25.0, help="length of a paced phase")
    p.add_argument("--peak-seconds", type=float, default=6.0, help="matmul peak measurement")
    p.add_argument("--profile", action="store_true", help="py-spy profile of the consumer")
    p.add_argument(
        "--engine",
        default="{}",
        help="JSON EngineConfig overrides for stage 3, e.g. '{\"workers\": 1}'",
    )
    from bench.peers.stage import add_arguments as add_peer_arguments

    add_peer_arguments(p)  # the peers stage: --peers, --no-peers, --peers-smoke, ...
    return p


def _apply_quick(args: argparse.Namespace) -> None:
    args.messages = min(args.messages, 300)
    args.restart_backlog = min(args.restart_backlog, 500)
    args.naive_sample = min(args.naive_sample, 10)
    args.warmup = min(args.warmup, 64)
    args.paced_seconds = min(args.paced_seconds, 3.0)
    args.peak_seconds = min(args.peak_seconds, 0.5)


def main(argv: list[str] | None = None) -> int:
    """Run the stages; returns 0, or 2 for bad options/data, 1 when a stage failed."""
    args = build_parser().parse_args(argv)
    if args.quick:
        _apply_quick(args)
    if not args.data_dir:
        print("error: pass --data-dir (or set CLASSIFIER_DATA_DIR)", file=sys.stderr)
        return 2
    data_dir = Path(args.data_dir).resolve()
    streams = [s.strip() for s in args.streams.split(",") if s.strip()]
    if any(s not in ("short", "long") for s in streams) or not streams:
        print(f"error: --streams takes short and/or long, got {args.streams!r}", file=sys.stderr)
        return 2
    paced = [float(v) for v in args.paced.split(",") if v.strip()]
    try:
        process_counts = [int(v) for v in args.processes.split(",") if v.strip()]
    except ValueError:
        process_counts = []
    if not process_counts or min(process_counts) < 1:
        print(f"error: --processes takes counts like 1,2, got {args.processes!r}", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from bench import cpu, decoding, e2e, http, kafka_io, machine, processes, report
    from bench.streams import DataError, ensure_bundle, load_stream

    began = time.monotonic()
    results: dict[str, Any] = {
        "command": "python -m bench " + shlex.join(sys.argv[1:] if argv is None else argv),
        "quick": args.quick,
        "machine": machine.describe(),
        "streams": {},
    }
    try:
        if args.bundle:
            bundle = args.bundle.resolve()
        elif args.quick:
            bundle = ensure_bundle(data_dir, REPO / QUICK_BUNDLE_DIR, epochs=1, limit=2000)
        else:
            from bench.streams import DEFAULT_BUNDLE_DIR

            bundle = ensure_bundle(data_dir, REPO / DEFAULT_BUNDLE_DIR, epochs=args.epochs)
        for name in streams:
            load_stream(name, data_dir, 1)  # fail early on a missing dataset
    except (DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    results["bundle"] = str(bundle)
    engine_overrides = json.loads(args.engine)

    def say(message: str) -> None:
        print(f"» [{time.monotonic() - began:6.0f} s] {message}", file=sys.stderr, flush=True)

    try:
        if not args.no_cpu:
            say("measuring the float32 matmul peak")
            results["peak"] = cpu.run_job({"kind": "peak", "seconds": args.peak_seconds})
        for name in [] if args.no_cpu else streams:
            common = {"bundle": str(bundle), "data_dir": str(data_dir), "stream": name}
            say(f"{name}: stages 1-2 (naive, fixed-shape) on {args.messages} messages")
            base = cpu.run_job(
                {
                    "kind": "baseline",
                    **common,
                    "messages": args.messages,
                    "naive_sample": args.naive_sample,
                    "batch_size": args.batch_size,
                }
            )
            say(f"{name}: stage 3 (engine)")
            eng = cpu.run_job(
                {
                    "kind": "engine",
                    **common,
                    "messages": args.messages,
                    "batch_size": args.batch_size,
                    "engine": engine_overrides,
                }
            )
            say(f"{name}: record decoding (stdlib json vs bounded orjson)")
            decoded = decoding.measure(load_stream(name, data_dir, args.messages).texts)
            results["streams"][name] = {
                "decoding": decoded,
                **{k: base[k] for k in ("naive", "fixed", "mean_real_tokens", "max_len")},
                "distinct": base["distinct"],
                "engine": eng["engine"],
                "macs": eng["macs"],
                "loadavg": {"baseline": base["loadavg"], "engine": eng["loadavg"]},
            }
        if not args.no_e2e:
            log_dir = REPO / "artifacts" / "bench" / "logs"
            with kafka_io.broker(args.bootstrap_servers, REPO / "artifacts" / "bench") as bootstrap:
                for name in streams:
                    for count in process_counts:
                        say(f"{name}: stage 4 (end to end through Kafka at {bootstrap}), "
                            f"{count} consumer process(es)")  # fmt: skip
                        load_before = machine.loadavg()
                        result = e2e.run_stream(
                            bootstrap,
                            bundle,
                            name,
                            load_stream(name, data_dir, 1).distinct,
                            messages=args.messages,
                            warmup=args.warmup,
                            paced_loads=paced,
                            paced_seconds=args.paced_seconds,
                            max_batch_size=args.max_batch_size,
                            max_wait_ms=args.max_wait_ms,
                            extra_args=shlex.split(args.consumer_args),
                            log_dir=log_dir,
                            profile=args.profile,
                            processes=count,
                        )
                        result["loadavg"] = [load_before, machine.loadavg()]
                        stream = results["streams"].setdefault(name, {})
                        if count == process_counts[0]:
                            stream["e2e"] = result
                        else:  # stage 4 again, with more (or fewer) processes
                            stream.setdefault("e2e_processes", {})[str(count)] = result
                if not args.no_formats:
                    from bench import formats

                    with formats.registry(
                        args.schema_registry_url, REPO / "artifacts" / "bench"
                    ) as registry_url:
                        for name in streams:
                            say(f"{name}: wire formats, Avro (Schema Registry) vs JSON")
                            results["streams"].setdefault(name, {})["formats"] = formats.run(
                                bootstrap,
                                bundle,
                                name,
                                load_stream(name, data_dir, 1).distinct,
                                messages=args.messages,
                                warmup=args.warmup,
                                max_batch_size=args.max_batch_size,
                                log_dir=log_dir,
                                registry_url=registry_url,
                            )
                if not args.no_drift:
                    from bench import drift

                    for name in streams:
                        say(f"{name}: drift signals off vs on (saturated drain, two pairs)")
                        results["streams"].setdefault(name, {})["drift"] = drift.overhead(
                            bootstrap,
                            bundle,
                            name,
                            load_stream(name, data_dir, 1).distinct,
                            messages=args.messages,
                            warmup=args.warmup,
                            max_batch_size=args.max_batch_size,
                            log_dir=log_dir,
                        )
                if not args.no_peers:  # the peer frameworks (bench/peers), when .venv-peers exists
                    from bench.peers.stage import run_stage

                    say("peers: the project and the peer frameworks, same broker/bundle/streams")
                    results["peers"] = run_stage(
                        args,
                        bootstrap,
                        bundle,
                        {n: load_stream(n, data_dir, 1).distinct for n in streams},
                        log_dir,
                        say,
                    )
                if not args.no_restart:
                    texts = load_stream("short", data_dir, 1).distinct
                    results["restart"] = {}
                    for static in (False, True):
                        kind = "static" if static else "dynamic"
                        say(f"restart to first batch, {kind} membership")
                        results["restart"][kind] = processes.restart_to_first_batch(
                            bootstrap, bundle, texts, static, args.restart_backlog, log_dir
                        )
                if not args.no_reload:
                    workers = max(2, *process_counts)
                    say(f"model reload across {workers} workers")
                    results["reload"] = processes.reload_across_workers(
                        bootstrap, bundle, workers, args.reload_interval_s, log_dir
                    )
        if not args.no_http:
            say("HTTP stage: python -m api, 1/8/64 clients, batching on and off")
            snippets = load_stream("short", data_dir, 1).distinct[:5000]
            results["http"] = http.run(
                bundle, snippets, seconds=args.http_seconds, paced_seconds=args.http_seconds
            )
    except (cpu.JobError, kafka_io.E2EError, http.HttpBenchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        _save(args.out, results, report)
        return 1
    results["seconds"] = round(time.monotonic() - began, 1)
    results["loadavg_end"] = machine.loadavg()
    table = _save(args.out, results, report)
    print(table)
    say(f"saved {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")
    return 0


def _save(out: Path, results: dict[str, Any], report: Any) -> str:
    out.parent.mkdir(parents=True, exist_ok=True)
    m = results["machine"]
    table = (
        f"Machine: {m['cpu']} ({m['cores']} cores, {m['mhz']:.0f} MHz, {', '.join(m['simd'])}), "
        f"{m['memory_gib']} GiB; TensorFlow {m['versions']['tensorflow']}, Keras "
        f"{m['versions']['keras']}, librdkafka {m['versions']['librdkafka']}, Kafka "
        f"{m['versions']['kafka-broker']}. Load average at start {m['loadavg'][0]:.2f}, at end "
        f"{results.get('loadavg_end', [float('nan')])[0]:.2f}.\n\n"
        f"`{results['command']}`\n\n" + report.markdown(results)
    )
    out.with_suffix(".md").write_text(table, encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    return str(table)


if __name__ == "__main__":
    sys.exit(main())
