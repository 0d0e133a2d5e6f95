"""The Quickstart demo: held-out BBC News articles through a real Kafka broker.

``python deploy/demo.py --data-dir ../shared/datasets`` (``make demo`` runs it):

1. uses ``$KAFKA_BOOTSTRAP_SERVERS`` or starts (or reuses) the local single-node broker
   of ``deploy/local_kafka.py`` on 127.0.0.1:9092;
2. trains the BBC model with ``python -m training.fit`` unless the model directory
   already holds one;
3. starts ``python -m consumer`` on fresh demo topics and waits until it has its partitions;
4. produces the held-out 20% of BBC News (the rows the model never saw), keyed by id;
5. prints each prediction as it arrives, then one line with the accuracy through the
   stream, the throughput and the latency;
6. stops the consumer with SIGTERM (graceful) and deletes the demo topics.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient  # noqa: E402

from deploy import local_kafka  # noqa: E402
from deploy.consumer_process import ConsumerProcess, ConsumerStartError  # noqa: E402
from training.data import DATA_DIR_ENV, load_csv  # noqa: E402
from training.fit import SPLIT_FILE  # noqa: E402


def _bootstrap(explicit: str | None) -> str:
    if explicit:
        return explicit
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return os.environ["KAFKA_BOOTSTRAP_SERVERS"]
    print("» starting (or reusing) the local Kafka broker on 127.0.0.1:9092 …", flush=True)
    return local_kafka.start()


def _ensure_model(model_dir: Path, data_dir: Path) -> None:
    if (model_dir / "current").exists():
        print(f"» using the model in {model_dir} (delete it to retrain)", flush=True)
        return
    print(
        f"» no model in {model_dir}: training one on BBC News (about 1-2 min on 2 cores)",
        flush=True,
    )
    cmd = [sys.executable, "-m", "training.fit", "--dataset", "bbc", "--data-dir", str(data_dir)]
    subprocess.run([*cmd, "--output", str(model_dir)], cwd=REPO, check=True)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit code."""
    p = argparse.ArgumentParser(prog="python deploy/demo.py", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=os.environ.get(DATA_DIR_ENV), help=f"or ${DATA_DIR_ENV}")
    p.add_argument("--model-dir", type=Path, default=REPO / "artifacts" / "models" / "bbc")
    p.add_argument("--bootstrap-servers", default=None, help="default: local broker")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    args = p.parse_args(argv)
    if not args.data_dir or not Path(args.data_dir, "bbc", "bbc-text.csv").is_file():
        print(
            f"error: BBC News not found; pass --data-dir (or set {DATA_DIR_ENV}) to the folder "
            "holding bbc/bbc-text.csv (in this repository's CI: ../shared/datasets)",
            file=sys.stderr,
        )
        return 2
    data_dir = Path(args.data_dir).resolve()
    began = time.monotonic()
    bootstrap = _bootstrap(args.bootstrap_servers)
    _ensure_model(args.model_dir, data_dir)

    version_dir = (args.model_dir / "current").resolve()
    split = json.loads((version_dir / SPLIT_FILE).read_text())
    dataset = load_csv(data_dir / "bbc" / "bbc-text.csv", "text", "category")
    if dataset.sha256 != split["dataset_sha256"]:
        print("error: the model was trained on another version of bbc-text.csv", file=sys.stderr)
        return 2
    held_out = split["test_indices"]
    truth = {f"bbc-{i}": dataset.labels[i] for i in held_out}

    run = uuid.uuid4().hex[:8]
    topics = {
        "input": f"demo-{run}-articles",
        "output": f"demo-{run}-predictions",
        "dlq": f"demo-{run}-articles.dlq",
    }
    log_dir = REPO / "artifacts" / "demo"
    log_dir.mkdir(parents=True, exist_ok=True)
    consumer_proc = ConsumerProcess(
        [
            "--bundle", str(args.model_dir),
            "--bootstrap-servers", bootstrap,
            "--input-topic", topics["input"],
            "--output-topic", topics["output"],
            "--dead-letter-topic", topics["dlq"],
            "--group-id", f"demo-{run}",
            "--create-topics",
        ],
        log_dir / "consumer.log",
    )  # fmt: skip
    print(f"» consumer starting (JSON log: {consumer_proc.log_path.relative_to(REPO)})", flush=True)
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"demo-reader-{run}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    code = 1
    try:
        try:
            consumer_proc.wait_assigned(120)
        except ConsumerStartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        reader.subscribe([topics["output"]])
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
        print(f"» producing {len(held_out)} held-out BBC articles to {topics['input']}", flush=True)
        t0 = time.monotonic()
        for i in held_out:
            key = f"bbc-{i}"
            value = json.dumps({"id": key, "text": dataset.texts[i], "source": "bbc"})
            producer.produce(topics["input"], key=key.encode(), value=value.encode())
            producer.poll(0)
        producer.flush(30)

        seen: dict[str, str] = {}
        latencies: list[float] = []
        t_last = t0
        deadline = time.monotonic() + 300
        while len(seen) < len(truth) and time.monotonic() < deadline:
            for m in reader.consume(500, 0.5):
                if m.error() is not None or m.value() is None:
                    continue
                pred = json.loads(m.value() or b"{}")
                t_last = time.monotonic()
                if pred["id"] in seen:
                    continue
                seen[pred["id"]] = pred["label"]
                latencies.append(pred["latency_ms"])
                if not args.quiet:
                    ok = "✓" if pred["label"] == truth[pred["id"]] else "✗"
                    print(
                        f"[{len(seen):>4}/{len(truth)}] {pred['id']:<9} "
                        f"{pred['label']:<13} {pred['confidence']:.2f}  "
                        f"true={truth[pred['id']]:<13} {ok}",
                        flush=True,
                    )
        correct = sum(seen[k] == truth[k] for k in seen)
        elapsed = max(t_last - t0, 1e-9)
        print(
            f"\nRESULT: {len(seen)}/{len(truth)} predicted · accuracy {correct / len(truth):.4f} "
            f"({correct}/{len(truth)}) · {len(seen) / elapsed:.0f} messages/s end to end "
            f"({elapsed:.2f} s) · processing latency p50 {_percentile(latencies, 50):.0f} ms, "
            f"p99 {_percentile(latencies, 99):.0f} ms · model "
            f"{version_dir.name} · demo took {time.monotonic() - began:.0f} s",
            flush=True,
        )
        code = 0 if len(seen) == len(truth) else 1
    finally:
        reader.close()
        stopped = consumer_proc.stop()
        if stopped != 0:
            print(f"consumer exited with {stopped}; see {consumer_proc.log_path}", file=sys.stderr)
            code = code or stopped
        AdminClient({"bootstrap.servers": bootstrap}).delete_topics(list(topics.values()))
    return code


if __name__ == "__main__":
    sys.exit(main())
