"""Length-aware, compiled inference for the LSTM classifiers: texts → class probabilities.

Why it exists: calling ``model.predict`` once per message costs tens of milliseconds of Keras
overhead, and the usual batched baseline computes every sequence at the full ``max_len``
although most news snippets have a few dozen real tokens. The engine removes both costs and
returns the same probabilities (within ``1e-5``) as the Keras model on full-length padded input.

How (and where):

1. **Ragged encoding.** Each text becomes its vocabulary ids with
   :meth:`model.pipeline.TextPipeline.token_ids` (the one preprocessing path), truncated like
   :func:`model.sequences.pad_sequences` would, but never padded to ``max_len``.
2. **Length-aware micro-batches** (:mod:`~model.engine.chunks`). Rows are sorted by length and
   cut into chunks of a few fixed row counts (8 … 256) where a small dynamic program finds
   padding cheaper than another call; each chunk is trimmed to its longest member.
3. **Masking makes trimming exact.** With ``Embedding(mask_zero=True)`` a masked LSTM step
   keeps its state, so a sequence's result depends only on its real tokens, whatever the
   padding side or amount. The engine feeds real tokens left-aligned and stops each row's
   recurrence at its own length.
4. **One compiled function per model** (the *fused* path, :mod:`~model.engine.fused`). The
   weights of the network built by :func:`model.network.build_model` (read by
   :mod:`~model.engine.spec`) become constants of one ``tf.function``, compiled by XLA once
   per row bucket (the matrix is ``max_len`` wide; the recurrence runs only to the chunk's
   longest row), with the embedding folded into the first layer's input kernel, both
   directions in one matmul per step and fused gates. Chunks run on a small thread pool
   (:mod:`~model.engine.scheduler`; compiled calls release the GIL), so inference runs on
   the cores while the calling thread tokenises the next slice of the batch.
5. **Verified, with fallbacks** (:mod:`~model.engine.selection`, :mod:`~model.engine.paths`).
   On construction the engine compares its path against the Keras model on full-length
   padded random sequences (all lengths, empty ones included). A network it does not
   recognise, or a mismatch, falls back to ``keras-trimmed`` (the Keras model in a
   ``tf.function`` on the same trimmed chunks, verified the same way), and a model without
   padding masks to ``keras-full`` (the padded ``max_len`` matrix, no trimming).

TensorFlow's thread pools must be sized before its first operation:
:func:`configure_threads` (:mod:`~model.engine.threads`) does that (``model.bundle.load_bundle``
calls it before loading); the environment variables it and :class:`EngineConfig` read are
listed in :mod:`~model.engine.env`.

Modules: ``env`` (environment variables), ``threads`` (TensorFlow thread pools), ``config``
(knobs, constants, counters), ``spec`` (Keras model → weights), ``fused`` (the compiled
function), ``chunks`` (planning and chunk matrices), ``scheduler`` (worker pool), ``paths``
(the three paths), ``selection`` (choosing and verifying one), ``runner``
(:class:`InferenceEngine`). Everything public is re-exported here.
"""

from model.engine.arrays import FloatArray, IntArray
from model.engine.chunks import Chunk, RaggedIds, plan_chunks
from model.engine.config import (
    FULL_LENGTH_CHUNK,
    MAX_FOLDED_TABLE_BYTES,
    ROW_BUCKETS,
    TIME_BUCKET,
    EngineConfig,
    EngineStats,
)
from model.engine.env import INTER_OP_ENV, INTRA_OP_ENV, WARMUP_ENV, WORKERS_ENV
from model.engine.paths import (
    FusedPath,
    InferencePath,
    KerasFullPath,
    KerasTrimmedPath,
    PathName,
    TrimmedPath,
)
from model.engine.runner import InferenceEngine
from model.engine.spec import NetworkSpec, UnsupportedModelError, extract_network, macs_summary
from model.engine.threads import ThreadSettings, configure_threads, cpu_count

__all__ = [
    "FULL_LENGTH_CHUNK",
    "INTER_OP_ENV",
    "INTRA_OP_ENV",
    "MAX_FOLDED_TABLE_BYTES",
    "ROW_BUCKETS",
    "TIME_BUCKET",
    "WARMUP_ENV",
    "WORKERS_ENV",
    "Chunk",
    "EngineConfig",
    "EngineStats",
    "FloatArray",
    "FusedPath",
    "InferenceEngine",
    "InferencePath",
    "IntArray",
    "KerasFullPath",
    "KerasTrimmedPath",
    "NetworkSpec",
    "PathName",
    "RaggedIds",
    "ThreadSettings",
    "TrimmedPath",
    "UnsupportedModelError",
    "configure_threads",
    "cpu_count",
    "extract_network",
    "macs_summary",
    "plan_chunks",
]
