"""Type stubs of shardfeed's native module (the names shardfeed re-exports)."""

import os
from typing import Any, Callable, Iterator, Literal, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, os.PathLike]
_Shards = Union[_Path, Sequence[_Path]]

class ShardfeedError(RuntimeError):
    """A shardfeed operation failed (the message names the file and, for records, the offset)."""

class DamagedRecordError(ShardfeedError):
    """A damaged record: bad CRC, not a ``tf.train.Example``, or an undecodable image."""

    path: str
    """The shard file."""
    offset: Optional[int]
    """The byte offset of the record's frame (None for compressed files)."""
    record: int
    """The record's index in its file, from 0."""
    reason: str
    """What is wrong."""

class ShardReport:
    """What :func:`shard` wrote."""

    records: int
    """Records written."""
    classes: list[str]
    """The class names, in index order (a record's ``class`` indexes this list)."""
    skipped: list[Tuple[str, str]]
    """Files left out, as ``(path, reason)``."""
    shards: list[str]
    """The shard files written, in order."""
    manifest: str
    """The ``manifest.json`` written (a worker's part manifest for a split run)."""

def shard(
    src: _Path,
    out: _Path,
    *,
    size: int = 160,
    resize: Literal["crop", "fit", "keep"] = "crop",
    max_side: int = 512,
    verify: Literal["decode", "headers"] = "decode",
    labels: str = "name",
    keep_names: bool = False,
    exif_orientation: Literal["apply", "ignore"] = "ignore",
    shards: int = 16,
    quality: int = 95,
    classes: Optional[Sequence[str]] = None,
    prefix: str = "data",
    seed: int = 42,
    jobs: Optional[int] = None,
    compression: Optional[Literal["none", "gzip", "zlib"]] = None,
    strict: bool = False,
    overwrite: bool = False,
    progress: Optional[Callable[[int, int], Any]] = None,
    num_workers: Optional[int] = None,
    worker_index: Optional[int] = None,
) -> ShardReport:
    """Shards the labelled JPEGs of ``src`` (label = the file name's first ``.``-separated
    token) into ``out``: the shorter side resized to ``size``, centre-cropped, JPEG q``quality``
    4:4:4, seeded shuffle, ``shards`` files — the same bytes as ``shardfeed shard``.

    ``resize="fit"`` keeps each image's aspect ratio with its longer side at most ``max_side``
    (never upscaled); ``"keep"`` stores each source JPEG's bytes unchanged (checked by a whole
    decode, or only its header with ``verify="headers"``). Both add ``height`` and ``width`` to
    every record and the size range to ``manifest.json``.

    ``labels="folder"`` takes each image's class from the folder it is in under ``src``
    (``src/cat/**/*.jpg`` → ``cat``, any depth); ``labels="csv:FILE"`` from a CSV of
    ``file,label`` rows (a header naming both; paths relative to ``src``; a bad row is
    skipped and listed by its line). ``keep_names=True`` stores each image's path under
    ``src`` in its record (``name``). ``exif_orientation="apply"`` turns each JPEG upright as
    its EXIF orientation says (default ``"ignore"``: TensorFlow's pixels).

    ``progress(done, total)`` is called as files are prepared; an exception it raises (or
    Ctrl-C) stops the run and removes what it wrote. Files that cannot be used are skipped and
    listed in the report (``strict=True``: the first one is an error instead).

    ``num_workers=W, worker_index=I``: this call is worker ``I`` of a run split over ``W``
    processes or machines (Spark or Ray tasks, pods): it writes only the shards ``n`` with
    ``n % W == I`` and a part manifest; :func:`shard_merge` then writes ``manifest.json``. The
    shards are byte-identical to a single call's. Without ``worker_index`` the index comes
    from ``JOB_COMPLETION_INDEX`` (Kubernetes) or ``SLURM_ARRAY_TASK_ID`` (Slurm).
    """

def shard_merge(out: _Path) -> ShardReport:
    """Checks the parts the workers of a split :func:`shard` run wrote into ``out`` (every
    worker finished, all from one run, their shards whole) and writes ``manifest.json``.
    Raises :class:`ShardfeedError` naming what is missing or inconsistent."""

class Loader:
    """Batches of shard records for a training loop.

    ``shards`` is a folder (its ``*.tfrec`` files; compression from its ``manifest.json``),
    a file, a glob, or a list of them. Iterating yields ``(images, labels)`` numpy arrays:
    ``images`` float32 in [0, 1] (or uint8), shape ``(n, H, W, 3)`` (``layout="NHWC"``) or
    ``(n, 3, H, W)`` (``"NCHW"``); ``labels`` int64 of shape ``(n,)``. ``torch.from_numpy``,
    ``jax.numpy.asarray`` and ``tf.convert_to_tensor`` take them without a copy.

    One ``iter()`` yields the rest of a run of ``epochs`` epochs (runs are aligned: epochs
    ``0..E``, ``E..2E``, …; ``None``: without end), so after ``load_state_dict`` it ends
    where the uninterrupted run would have; the next ``iter()`` starts the next run. ``len(loader)`` is this rank's
    batches per epoch.

    Distributed: each epoch's order (the one ``shardfeed train`` uses, from ``seed``) is cut
    into steps of ``world_size × batch_size`` records, rank ``r`` taking the ``r``-th batch of
    each step, so ranks get disjoint records and the same number of batches. What does not
    fill a step is dropped (``drop_remainder=True``, counted in ``stats()["dropped"]``) or
    split into equal last batches, completed where needed with records from the epoch's start
    (``stats()["padded"]``).

    Resume: ``state_dict()`` (the same on every rank after the same number of batches) and
    ``load_state_dict(state)`` continue with exactly the batches the uninterrupted run would
    have produced; a state saved with another ``world_size`` continues the rest of the epoch
    split over the new ranks, each remaining record once. Needs ``deterministic=True``.

    ``on_damaged="raise"`` raises :class:`DamagedRecordError`; ``"skip"`` leaves the record
    out of its batch (one shorter) and lists it in ``stats()["skipped"]`` with file and offset.

    In PyTorch ``DataLoader(IterableDataset wrapping it, batch_size=None, num_workers=N)``
    workers, worker ``w`` is rank ``w × world_size + rank`` of ``world_size × N`` (``jobs=None``
    shares the cores out): the batches the ``DataLoader`` hands out in turn are this rank's
    batches in their order, pixels, crops and flips equal; only the last records that do not
    fill a step of ``world_size × N`` batches are dropped or evened out over more ranks. The
    workers iterate copies: call :meth:`set_epoch` before each epoch (or use
    ``persistent_workers=True``); a state loaded before the ``DataLoader`` starts is where the
    workers begin, and ``state_dict(batches=n, workers=N)`` is the state after the ``n``
    batches the training loop received. A ``Loader`` pickles as its arguments and its state (``spawn`` and
    ``forkserver`` workers).

    Records of varying size (``shard(resize="fit"|"keep")``, other writers' records) are made
    into ``size`` squares as they are read (shorter side → ``size``, centre crop; default
    160); a ``crop`` folder keeps its own size unless ``size`` asks for another. Such a loader
    says so once in a ``UserWarning`` and in :attr:`note`. The image and class are read from
    ``image``/``class``, else TensorFlow's ``image/encoded``/``image/class/label``, or the
    features named by ``image_key``/``label_key``.

    ``transform``: :mod:`shardfeed.transforms` ``Compose([...])`` of ``RandomResizedCrop`` or
    ``CenterCrop``, then ``RandomHorizontalFlip``, then ``Normalize``, run inside the decode
    (the crop's region only, at a DCT scale); each record's crop and flip are keyed by
    ``(seed, epoch, record)``, the same for any ``jobs``/``world_size`` and after a resume.
    ``dtype`` ``"float16"`` gives numpy float16; ``"bfloat16"`` gives ``ml_dtypes.bfloat16``
    where ``ml_dtypes`` is importable, else the raw bits as uint16. ``return_ids=True`` makes
    each batch ``(images, labels, ids)``, ``ids`` a dict of numpy arrays: ``file`` (index into
    :attr:`files`), ``record`` (index in that file), ``crop`` (``(n, 4)`` float64: left, top,
    width, height in the record's pixels; NaN without a transform) and ``flip`` (bool).
    """

    def __init__(
        self,
        shards: _Shards,
        *,
        batch_size: int = 32,
        shuffle: int = 2048,
        seed: int = 42,
        deterministic: bool = True,
        epochs: Optional[int] = 1,
        drop_remainder: bool = True,
        cache: bool = True,
        jobs: Optional[int] = None,
        rank: int = 0,
        world_size: int = 1,
        split: Optional[Tuple[Literal["train", "validation"], float]] = None,
        dtype: Literal["float32", "float16", "bfloat16", "uint8"] = "float32",
        layout: Literal["NHWC", "NCHW"] = "NHWC",
        on_damaged: Literal["raise", "skip"] = "raise",
        compression: Optional[Literal["none", "gzip", "zlib"]] = None,
        cache_bytes: int = 4 << 30,
        ignore_manifest: bool = False,
        size: Optional[int] = None,
        image_key: Optional[str] = None,
        label_key: Optional[str] = None,
        transform: Optional[Any] = None,
        return_ids: bool = False,
    ) -> None: ...
    @property
    def note(self) -> Optional[str]:
        """Why images are resized as they are read, or ``None``."""
    def __len__(self) -> int:
        """This rank's batches per epoch."""
    def __iter__(self) -> "LoaderIter":
        """The rest of the current run of ``epochs`` epochs; an older iterator stops."""
    @property
    def epoch(self) -> int:
        """The epoch the next batch belongs to, from 0."""
    @property
    def records(self) -> int:
        """Records per epoch, all ranks together."""
    @property
    def files(self) -> list[str]:
        """The shard files read (after ``split``), sorted."""
    def state_dict(self, batches: Optional[int] = None, workers: int = 0) -> dict[str, Any]:
        """Where the loader stands: a small JSON-serialisable dict. ``batches=n``: where it
        stands after ``n`` more of this rank's batches handed out by ``workers``
        ``DataLoader`` workers (``0``: iterated here) — what a training loop whose workers
        iterate copies saves mid-epoch, after a multiple of ``workers`` batches (inside a
        step of the workers' batches, inside an epoch's last, uneven batches
        (``drop_remainder=False``) or past its end it raises ``ValueError``: those cannot be
        continued exactly)."""
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continues from a :meth:`state_dict` of the same files and order settings."""
    def set_epoch(self, epoch: int) -> None:
        """The next ``iter()`` starts at the beginning of ``epoch`` (``set_size`` kept). Call
        it before each epoch where ``DataLoader`` workers iterate copies of the loader (as
        ``DistributedSampler.set_epoch``); this one does not see their batches."""
    def __reduce__(self) -> Tuple[Any, ...]:
        """Pickled as its arguments and its :meth:`state_dict`."""
    def set_size(self, size: int) -> None:
        """The transform's output side from the next epoch on (progressive resizing): each
        record keeps its crop and flip, resized to ``size``. Kept in :meth:`state_dict`."""
    @property
    def size(self) -> Optional[int]:
        """The side the next epoch's transform makes (``None`` without a transform)."""
    def stats(self) -> dict[str, Any]:
        """Images, batches, seconds, images/s, consumer wait, per-stage busy/wait times,
        cache hits, padded, dropped and skipped records, and ``autotune``: the decode
        workers and prefetch depth the pipeline chose while running (at most ``jobs``
        workers), with a one-line ``summary`` of why and every ``changes`` entry. The names
        and figures are those of ``shardfeed stream --json`` (one ``ReadStats`` behind both)."""

class LoaderIter(Iterator[Tuple[Any, ...]]):
    """One pass of a :class:`Loader`; dropping it stops and joins the worker threads. Each
    item is ``(images, labels)``, or ``(images, labels, ids)`` with ``return_ids=True``."""

    def __iter__(self) -> "LoaderIter": ...
    def __next__(self) -> Tuple[Any, ...]: ...

class RecordIter(Iterator[Tuple[bytes, int]]):
    """The records of one file as ``(jpeg_bytes, class)`` (``image``/``class``, or
    TensorFlow's ``image/encoded``/``image/class/label``)."""

    def __iter__(self) -> "RecordIter": ...
    def __next__(self) -> Tuple[bytes, int]: ...

def inspect(
    paths: _Shards,
    *,
    compression: Optional[Literal["none", "gzip", "zlib"]] = None,
    verify: bool = True,
    label_key: Optional[str] = None,
) -> list[dict[str, Any]]:
    """One report per file (as ``shardfeed inspect --json``): records, bytes, features,
    class counts (of ``label_key``; default ``class``, else ``image/class/label``), class
    names, the ``.idx`` status and the first problem's record and offset."""

def records(path: _Path, *, compression: Optional[Literal["none", "gzip", "zlib"]] = None) -> RecordIter:
    """The records of one shard file as ``(jpeg_bytes, class)``, CRCs checked; a damaged
    record raises :class:`DamagedRecordError`."""

def synthetic(
    out: _Path,
    *,
    train: int = 1000,
    test: int = 0,
    classes: Optional[Sequence[str]] = None,
    min_side: int = 120,
    max_side: int = 400,
    seed: int = 7,
) -> None:
    """Writes a synthetic labelled folder for trying things out: ``out/train/LABEL.I.jpg`` and
    ``out/test/I.jpg``, each image a pure function of its index and the seed."""
