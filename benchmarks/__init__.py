"""Benchmarks: twinnn's train step against hand-written native code and Keras 3.

Run ``python -m benchmarks`` (see ``python -m benchmarks --help`` and ``docs/performance.md``).
The parent process (:mod:`benchmarks.run`) only spawns workers and prints tables: every
measurement runs in a fresh subprocess (:mod:`benchmarks.worker`) with one framework and the
right ``KERAS_BACKEND``, so no framework is timed while another is loaded.

This package module imports nothing but the standard library, so that a worker can time
``import twinnn`` / ``import torch`` as the very first thing it does.
"""

from __future__ import annotations

#: Version of the JSON document written by ``--json``; bumped on any incompatible change.
SCHEMA_VERSION = 1

#: Backends and the implementations measured on each, in table order.
BACKENDS = ("torch", "tensorflow")
IMPLEMENTATIONS = ("twinnn", "native", "keras3")

#: (workload with dropout, the same workload without): when a run has both, they are timed in
#: the same interleaved rounds, and the report gives their difference, the cost of dropout.
DROPOUT_PAIRS = (("lm_lstm", "lm_lstm_nodrop"),)
