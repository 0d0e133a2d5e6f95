"""``python -m consumer.replay`` against the real broker and the real service.

Articles over a lowered ``--max-text-bytes`` are dead-lettered; the limit is raised, the
letters are replayed and predicted, exactly once; a second run replays nothing; a letter
whose record was already replayed ``--max-replays`` times is refused.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from consumer.replay import REPLAY_COUNT_HEADER
from tests.integration.conftest import TopicFactory
from tests.integration.streaming import (
    REPO_ROOT,
    Collector,
    Topics,
    held_out_articles,
    produce,
    start_consumer,
    wait_exit,
)

LIMIT = 1_500  # bytes: about a third of the BBC articles are longer


def _replay(
    bundle: Path, bootstrap: str, topics: Topics, group: str, *args: str
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable, "-m", "consumer.replay",
        "--bundle", str(bundle),
        "--bootstrap-servers", bootstrap,
        "--input-topic", topics.input,
        "--output-topic", topics.output,
        "--dead-letter-topic", topics.dead_letter,
        "--group-id", group,
        *args,
    ]  # fmt: skip
    return subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def _end_offsets(bootstrap: str, topic: str) -> list[int]:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"ends-{uuid.uuid4().hex}"})
    try:
        metadata = reader.list_topics(topic, timeout=10).topics[topic]
        return [
            reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in sorted(metadata.partitions)
        ]
    finally:
        reader.close()


def test_dead_letters_are_replayed_once_the_cause_is_fixed(
    kafka_bootstrap: str, new_topic: TopicFactory, bbc_bundle: Path, bbc_csv: Path, tmp_path: Path
) -> None:
    topics = Topics(new_topic("replay-in"), new_topic("replay-out"), new_topic("replay-dlq"))
    articles = held_out_articles(bbc_bundle, bbc_csv)[:40]
    long_ids = {i for i, text, _ in articles if len(text.encode()) > LIMIT}
    assert 5 <= len(long_ids) < len(articles)
    produce(
        kafka_bootstrap,
        topics.input,
        [(i.encode(), json.dumps({"id": i, "text": t}).encode()) for i, t, _ in articles],
    )
    # A record that was already replayed three times and still fails (bad JSON).
    spent = Producer({"bootstrap.servers": kafka_bootstrap})
    spent.produce(
        topics.input,
        key=b"spent",
        value=b'{"id": "spent", "text": ',
        headers=[(REPLAY_COUNT_HEADER, b"3")],
    )
    assert spent.flush(30) == 0

    group = f"classifier-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "consumer.log"
    collector = Collector(kafka_bootstrap, topics)
    try:
        limited = start_consumer(
            bbc_bundle, kafka_bootstrap, topics, group, log_path, "--max-text-bytes", str(LIMIT)
        )
        total = len(articles) + 1
        assert collector.poll_until(
            lambda c: len(c.predictions) + len(c.dead_letters) >= total, 120
        ), log_path.read_text()[-3000:]
        limited.send_signal(signal.SIGTERM)
        assert wait_exit(limited) == 0
        codes = Counter(d.value["error_code"] for d in collector.dead_letters)
        assert codes == {"text_too_large": len(long_ids), "invalid_json": 1}

        inputs_before = _end_offsets(kafka_bootstrap, topics.input)
        dry = _replay(bbc_bundle, kafka_bootstrap, topics, group, "--error-code",
                      "text_too_large", "--dry-run")  # fmt: skip
        assert dry.returncode == 0, dry.stderr
        planned = [json.loads(line) for line in dry.stdout.splitlines() if line.startswith("{")]
        assert {p["key"] for p in planned} == long_ids
        assert all(p["verdict"] == "replay" and p["to"] == topics.input for p in planned)
        assert f"would replay {len(long_ids)} " in dry.stdout
        assert _end_offsets(kafka_bootstrap, topics.input) == inputs_before  # nothing sent

        fixed = start_consumer(bbc_bundle, kafka_bootstrap, topics, group, log_path)
        done = _replay(bbc_bundle, kafka_bootstrap, topics, group, "--error-code", "text_too_large")
        assert done.returncode == 0, done.stderr
        assert f"replayed {len(long_ids)} " in done.stdout
        assert "filtered out 1" in done.stdout  # the invalid_json letter
        assert collector.poll_until(lambda c: len(c.predictions) >= len(articles), 120)
        ids = Counter(p.value["id"] for p in collector.predictions)
        assert set(ids) == {i for i, _, _ in articles}
        assert max(ids.values()) == 1  # every article predicted exactly once
        assert len(collector.dead_letters) == len(long_ids) + 1  # no new dead letters

        again = _replay(
            bbc_bundle, kafka_bootstrap, topics, group, "--error-code", "text_too_large"
        )
        assert again.returncode == 0, again.stderr
        assert "replayed 0 " in again.stdout  # the group's offsets were committed

        inputs_before = _end_offsets(kafka_bootstrap, topics.input)
        limit = _replay(bbc_bundle, kafka_bootstrap, topics, group, "--error-code", "invalid_json")
        assert limit.returncode == 0, limit.stderr
        assert "replayed 0 " in limit.stdout
        assert "refused 1 " in limit.stdout
        assert "already replayed 3 times" in limit.stdout
        assert _end_offsets(kafka_bootstrap, topics.input) == inputs_before
        fixed.send_signal(signal.SIGTERM)
        assert wait_exit(fixed) == 0
    finally:
        collector.close()
