"""shardfeed: shard labelled JPEGs into TFRecord files TensorFlow reads bit for bit, and feed
them to a PyTorch, JAX or TensorFlow training loop as numpy batches.

- :func:`shard` writes ``PREFIX{NN}-{COUNT}.tfrec`` shards with ``.idx`` files and a
  ``manifest.json``, byte for byte what ``shardfeed shard`` writes.
- :class:`Loader` streams them as ``(images, labels)`` numpy batches: decoded in parallel
  threads with the GIL released, one rank's share of each epoch with the same number of
  batches on every rank, exactly resumable from ``state_dict()``, damaged records raised or
  skipped and counted.
- :func:`shard` with ``num_workers``/``worker_index`` splits one run over Spark or Ray tasks
  (or pods, or Slurm array tasks); :func:`shard_merge` joins the parts.
- :func:`inspect` and :func:`records` look inside shard files.
- :mod:`shardfeed.transforms`: ``RandomResizedCrop``/``CenterCrop``, ``RandomHorizontalFlip``
  and ``Normalize`` run inside the decode (``Loader(transform=Compose([...]))``).
"""

import os as _os

from ._native import (
    DamagedRecordError,
    Loader,
    LoaderIter,
    RecordIter,
    ShardfeedError,
    ShardReport,
    __version__,
    inspect,
    records,
    shard,
    shard_merge,
    synthetic,
)
from ._native import _after_fork_in_child
from . import transforms

# A forked child (a PyTorch DataLoader worker, multiprocessing's "fork") makes its own
# object-storage runtime; a Loader iterator from the parent raises there instead of waiting
# on threads the child does not have, and a Loader iterated there opens anew.
_os.register_at_fork(after_in_child=_after_fork_in_child)



def _loader_from(arguments, state):
    """A pickled :class:`Loader` opened anew: its arguments, then its ``state_dict()``."""
    loader = Loader(**arguments)
    loader.load_state_dict(state)
    return loader


__all__ = [
    "DamagedRecordError",
    "Loader",
    "LoaderIter",
    "RecordIter",
    "ShardReport",
    "ShardfeedError",
    "__version__",
    "inspect",
    "records",
    "shard",
    "shard_merge",
    "synthetic",
    "transforms",
]
