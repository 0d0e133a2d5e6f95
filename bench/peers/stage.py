"""The peers stage's options and runner (``python -m bench`` and ``python -m bench.peers``)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.peers.common import INFERENCE_MODES
from bench.peers.harness import PEERS, Plan, System, run

SMOKE_MESSAGES = 40


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The stage's command-line options."""
    g = p.add_argument_group("peer frameworks (bench/peers, needs .venv-peers)")
    g.add_argument("--peers", default=",".join(PEERS), help="peers to run: quix,faust,mlserver")
    g.add_argument("--no-peers", action="store_true", help="skip the peers stage")
    g.add_argument(
        "--peers-smoke",
        action="store_true",
        help=f"only check labels: {SMOKE_MESSAGES} messages per system, short stream, no timing",
    )
    g.add_argument(
        "--peer-inference",
        choices=INFERENCE_MODES,
        default="keras",
        help="peers call Keras (predict_on_batch) or the project's engine (default %(default)s)",
    )
    g.add_argument(
        "--peer-engine-rows",
        default="faust",
        help="peers also run with --peer-inference engine as extra rows ('' for none)",
    )
    g.add_argument(
        "--peer-project-processes", default="1,2", help="project rows: consumer processes"
    )
    g.add_argument("--peer-backlog", type=int, default=20_000, help="saturation backlog cap")
    g.add_argument("--peer-agree", type=int, default=1000, help="messages checked for labels")
    g.add_argument(
        "--peer-saturation-s",
        type=float,
        default=30.0,
        help="a slow system's backlog: about this many seconds of its warm-up rate",
    )
    g.add_argument("--peer-paced-s", type=float, default=20.0, help="paced phase length (s)")
    g.add_argument(
        "--peer-max-wait-ms",
        type=int,
        default=50,
        help="the peers' batching window: faust take(within=), MLServer max_batch_time (ms)",
    )
    g.add_argument("--peer-profile", action="store_true", help="py-spy each system (saturated)")
    g.add_argument("--cpu-lock", type=Path, help="flock this file around each system's run")


def plan_from(args: argparse.Namespace) -> Plan:
    """The run sizes the options ask for (``--quick``: tiny; ``--peers-smoke``: labels only)."""
    if args.peers_smoke:
        return Plan(agree=SMOKE_MESSAGES, smoke=True, max_batch_size=args.max_batch_size,
                    max_wait_ms=args.max_wait_ms,
                    peer_max_wait_ms=args.peer_max_wait_ms)  # fmt: skip
    quick = bool(getattr(args, "quick", False))
    return Plan(
        agree=min(args.peer_agree, 100) if quick else args.peer_agree,
        backlog=min(args.peer_backlog, 300) if quick else args.peer_backlog,
        min_backlog=100 if quick else 500,
        saturation_s=min(args.peer_saturation_s, 5.0) if quick else args.peer_saturation_s,
        paced_s=min(args.peer_paced_s, 3.0) if quick else args.peer_paced_s,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        peer_max_wait_ms=args.peer_max_wait_ms,
        profile=args.peer_profile,
    )


def systems_from(args: argparse.Namespace) -> list[System]:
    """The table's rows: the project (each process count), the peers, the engine rows.

    Raises:
        ValueError: an unknown peer name.
    """
    names = [n.strip() for n in args.peers.split(",") if n.strip()]
    extra = [n.strip() for n in args.peer_engine_rows.split(",") if n.strip()]
    unknown = sorted(set(names + extra) - set(PEERS))
    if unknown:
        raise ValueError(f"unknown peers {unknown}; known: {','.join(PEERS)}")
    counts = [int(c) for c in args.peer_project_processes.split(",") if c.strip()]
    if args.peers_smoke:
        counts, extra = counts[:1], []
    systems = [System("project", processes=c) for c in counts]
    systems += [System(n, args.peer_inference) for n in names]
    if args.peer_inference == "keras":
        systems += [System(n, "engine") for n in extra if n in names]
    return systems


def run_stage(
    args: argparse.Namespace,
    bootstrap: str,
    bundle: Path,
    streams: dict[str, list[str]],
    log_dir: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """Run the peers stage; ``streams`` maps a stream name to its distinct documents."""
    if args.peers_smoke:
        streams = dict(list(streams.items())[:1])
    return run(
        bootstrap, bundle, streams, systems_from(args), plan_from(args), log_dir,
        args.cpu_lock, say,
    )  # fmt: skip
