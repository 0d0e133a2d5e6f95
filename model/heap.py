"""Keep the garbage collector's full collections short in a serving process.

Importing TensorFlow and Keras leaves ~390,000 long-lived objects that the cyclic garbage
collector tracks. Every full (generation 2) collection walks them all: ~150-230 ms on the
project's 2-core machine, with the GIL held, so a request or micro-batch that meets one waits
that long (it was the whole p99 of the HTTP API under load). :func:`freeze_imports` moves those
objects into the permanent generation (:func:`gc.freeze`, Python 3.7+; the technique is
Instagram's, described in the ``gc.freeze`` documentation), after which a full collection
walks only what the process created since (~10 ms with a loaded bundle).

It is called **before** a bundle is loaded, so a bundle replaced by hot reload is still
collected: frozen objects are never freed by the cyclic collector, and a Keras model holds
reference cycles.
"""

from __future__ import annotations

import gc


def freeze_imports() -> int:
    """Import TensorFlow and Keras, collect once, and freeze every object alive now.

    Returns:
        How many objects are now frozen (:func:`gc.get_freeze_count`).
    """
    import keras  # noqa: F401  (imported for the objects it leaves)
    import tensorflow  # noqa: F401

    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
