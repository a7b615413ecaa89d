"""Data-parallel training on each framework's own engine (DESIGN.md §16).

One script, N processes, either backend: start it with ``twinnn run -n N script.py`` and make
``twinnn.distributed.init()`` its first call. Each step takes a *global batch*; every rank
trains on its contiguous slice (:func:`shard`, or automatically in ``fit``); the losses
divide by the global count and the gradients are summed over the ranks, so N processes
compute what one process computes on the global batch. See docs/distributed.md.
"""

from twinnn.distributed.step import REDUCE_MODES
from twinnn.distributed.world import World, barrier, init, shard, slice_bounds, world

__all__ = ["REDUCE_MODES", "World", "barrier", "init", "shard", "slice_bounds", "world"]
