"""Throughput/latency benchmark of the classifier: ``python -m bench --data-dir DIR``.

One run on one machine measures, for a short-text stream (AG News test snippets) and a
long-text stream (BBC News articles), each repeated to ``--messages`` messages:

1. ``naive``: per-message ``model.predict`` (the tutorials' web app), on a sample;
2. ``fixed``: Keras ``predict_on_batch`` on batches of 256 padded to the full ``max_len``;
3. ``engine``: :mod:`model.engine` (what the consumer calls) on the same messages;
4. ``e2e``: input topic → ``python -m consumer`` → output topic through a real Kafka
   broker: saturated throughput, end-to-end latency percentiles, consumer peak RSS;

plus the machine's measured matmul peak, so the model's useful work (multiply-adds on
real tokens per second) can be put against the physical limit. CPU stages run in fresh
subprocesses so that each gets the TensorFlow thread settings it is best with.

Modules: :mod:`bench.streams` (data), :mod:`bench.cpu` (stages 1-3 and the peak, also a
subprocess entry point), :mod:`bench.e2e` (stage 4), :mod:`bench.report` (tables),
:mod:`bench.machine` (machine facts).
"""
