"""Where ``fit``, ``evaluate`` and ``predict`` get their batches: an array, a memory-mapped array, or batches.

- :class:`ArraySource`: an in-memory array, checked and converted whole, once; shuffling gathers
  it once per epoch so that every batch is contiguous.
- :class:`MemmapSource`: a ``np.memmap`` (e.g. ``np.load(path, mmap_mode="r")``), read batch by
  batch and never copied whole; each batch is checked and converted as it is read. Shuffling
  reads it in blocks of about :data:`MEMMAP_BLOCK_BYTES`: the blocks come in a random order and
  the samples of each block in a random order within it.
- :class:`IterableSource`: any iterable of ``(X_batch, y_batch)`` (a generator, a list, a
  ``Sequence``-like object), each batch checked as it comes; its batches are used as given
  (``shuffle`` does not apply; an explicit ``batch_size`` is refused).

Every source yields ``(x, y)`` batches ready for the layers: ``x`` a C-contiguous float array of
the model's dtype, ``y`` the targets as the loss takes them (``None`` where none are needed).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator, Sized
from typing import TYPE_CHECKING, Any

import numpy as np

from .inputs import prepare_inputs
from .layers.base import as_int

if TYPE_CHECKING:
    from .layers import Loss
    from .model import Sequential

__all__ = ["Source", "ArraySource", "MemmapSource", "IterableSource", "as_source", "is_batch_iterable",
           "batch_size_for", "MEMMAP_BLOCK_BYTES"]

#: Bytes of a memory-mapped data set read at once when shuffling: the blocks are shuffled, then the
#: samples within each block. Larger blocks shuffle better and use more memory (one block at a time).
MEMMAP_BLOCK_BYTES = 16 * 2**20

Batch = tuple[np.ndarray, "np.ndarray | None"]


class Source:
    """Batches for one pass over the data. ``samples`` (per pass) and ``steps`` are ``None`` when unknown."""

    samples: int | None = None
    steps: int | None = None
    #: Set by an :class:`IterableSource` whose iterator ran out before ``steps`` batches.
    exhausted: bool = False
    x_name: str = "X"
    once: bool = False

    def no_batch(self) -> ValueError:
        """The error for a pass that gave no batch at all."""
        hint = ("an iterator is read once; pass an object whose __iter__ starts a fresh pass each time"
                if self.once else "it is empty")
        return ValueError(f"{self.x_name} gave no batch: {hint}")

    def batches(self, batch_size: int, shuffle: bool = False, rng: np.random.Generator | None = None
                ) -> Iterator[Batch]:
        raise NotImplementedError


def _loss(model: Sequential) -> Loss:
    """The loss that prepares ``model``'s targets: labels need one to say what they mean."""
    if model.loss is None:
        raise ValueError(f"{model.name} has no loss, so targets cannot be prepared for it; pass loss= to Sequential")
    return model.loss


class ArraySource(Source):
    """An in-memory ``X`` (and ``y``), prepared whole at once."""

    def __init__(self, model: Sequential, X: Any, y: Any, x_name: str, y_name: str | None) -> None:
        self.X, self.x_name = prepare_inputs(model, X, x_name), x_name
        self.y = None if y_name is None else _loss(model).prepare_targets(y, len(self.X), y_name, x_name)
        self.samples = len(self.X)

    def batches(self, batch_size: int, shuffle: bool = False, rng: np.random.Generator | None = None
                ) -> Iterator[Batch]:
        X, y = self.X, self.y
        if shuffle:
            assert rng is not None  # fit passes its generator whenever it shuffles
            order = rng.permutation(len(X))
            X, y = X[order], None if y is None else y[order]  # one gather per epoch keeps every batch contiguous
        for start in range(0, len(X), batch_size):
            yield X[start:start + batch_size], None if y is None else y[start:start + batch_size]


class MemmapSource(Source):
    """A memory-mapped ``X``, read and prepared batch by batch (or block by block when shuffling).

    The first sample is checked (and builds an unbuilt model) up front; the labels, small
    next to the images, are prepared whole.
    """

    def __init__(self, model: Sequential, X: np.memmap, y: Any, x_name: str, y_name: str | None) -> None:
        if X.ndim < 2 or len(X) == 0:
            prepare_inputs(model, X, x_name)  # its error names what is wrong (empty, no feature axis)
        self.model, self.X, self.x_name = model, X, x_name
        self._check_file()
        prepare_inputs(model, X[:1], f"{x_name}[:1]")  # dtype and shape, on one sample: named as such
        self.samples = len(X)
        self.y = None if y_name is None else _loss(model).prepare_targets(y, len(X), y_name, x_name)

    def _check_file(self) -> None:
        """An ``OSError`` naming the file if it is now shorter than the map: reading past its end is SIGBUS."""
        filename = getattr(self.X, "filename", None)
        if filename is None:
            return
        needed = int(self.X.offset) + int(self.X.nbytes)
        try:
            size = os.stat(filename).st_size
        except OSError as err:
            raise OSError(f"{self.x_name}: its memory-mapped file {filename} cannot be read any more ({err}); "
                          "load it again with np.load(path, mmap_mode='r')") from None
        if size < needed:
            raise OSError(f"{self.x_name}: its memory-mapped file {filename} is now {size} bytes, but the map needs "
                          f"{needed} (offset {self.X.offset} + {self.X.nbytes}): the file was truncated or replaced "
                          "after np.load; restore it and load it again")

    def _read(self, start: int, stop: int) -> np.ndarray:
        self._check_file()  # one stat a batch: a truncated file would otherwise kill the process (SIGBUS)
        return prepare_inputs(self.model, self.X[start:stop], f"{self.x_name}[{start}:{stop}]")

    def batches(self, batch_size: int, shuffle: bool = False, rng: np.random.Generator | None = None
                ) -> Iterator[Batch]:
        n, y = len(self.X), self.y
        if not shuffle:
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                yield self._read(start, stop), None if y is None else y[start:stop]
            return
        assert rng is not None  # fit passes its generator whenever it shuffles
        assert self.model.dtype is not None and self.model.input_shape is not None  # built by __init__
        per_sample = self.model.dtype.itemsize * int(np.prod(self.model.input_shape))
        block = max(1, MEMMAP_BLOCK_BYTES // (per_sample * batch_size)) * batch_size  # whole batches a block
        for start in rng.permutation(np.arange(0, n, block)):
            stop = min(start + block, n)
            order = rng.permutation(stop - start)
            X_block = self._read(start, stop)[order]  # one sequential read, one shuffle in memory
            y_block = None if y is None else y[start:stop][order]
            for s in range(0, stop - start, batch_size):
                yield X_block[s:s + batch_size], None if y_block is None else y_block[s:s + batch_size]


class IterableSource(Source):
    """An iterable of batches: ``(X_batch, y_batch)`` pairs, or (for ``predict``) ``X_batch`` alone.

    An object whose ``__iter__`` starts a fresh pass (not itself an iterator) is read afresh for every
    pass; an iterator or generator is read once, ``steps`` batches a pass.
    """

    def __init__(self, model: Sequential, data: Iterable, steps: int | None, x_name: str, labels: bool) -> None:
        self.model, self.data, self.x_name, self.labels = model, data, x_name, labels
        self.once = isinstance(data, Iterator)
        self.passes = self.consumed = 0  # passes begun, and items an iterator gave before this pass
        if steps is not None:
            self.steps = as_int(steps, "steps_per_epoch" if labels else "steps", minimum=1)
        elif isinstance(data, Sized):
            self.steps = len(data)

    def batches(self, batch_size: int = 0, shuffle: bool = False, rng: np.random.Generator | None = None
                ) -> Iterator[Batch]:
        items = self.data if self.once else iter(self.data)
        count = 0
        self.passes += 1
        for i, item in enumerate(items if self.steps is None else itertools.islice(items, self.steps)):
            count += 1
            yield self._prepare(item, self._where(i))
        if self.once:
            self.consumed += count
        self.exhausted = self.steps is not None and count < self.steps or count == 0

    def _where(self, i: int) -> str:
        """``X batch 3`` in the first pass; later passes name the epoch, the step and the iterator's item."""
        if self.passes == 1:
            return f"{self.x_name} batch {i}"
        item = f", item {self.consumed + i + 1} of the iterator" if self.once else ""
        return f"{self.x_name} batch {i} (epoch {self.passes}, step {i + 1}{item})"

    def _prepare(self, item: Any, where: str) -> Batch:
        pair = isinstance(item, tuple) and len(item) == 2  # a tuple: a list of two images is a batch
        if self.labels and not pair:
            raise ValueError(f"{where} must be a tuple (X_batch, y_batch), got a {type(item).__name__}"
                             + (f" of length {len(item)}" if isinstance(item, (tuple, list)) else ""))
        x = prepare_inputs(self.model, item[0] if pair else item, f"{where}: X")
        if not self.labels:
            return x, None
        return x, _loss(self.model).prepare_targets(item[1], len(x), f"{where}: y", "X")  # "to match X": the batch's


def as_source(model: Sequential, X: Any, y: Any, x_name: str, y_name: str | None, steps: int | None = None,
              labels: bool = True) -> Source:
    """The right :class:`Source` for ``X`` (and ``y``): memmaps stay on disk, iterables of batches stay lazy.

    ``y`` must be given with an array ``X`` when ``labels`` (fit, evaluate) and must be ``None`` with
    an iterable of batches; ``steps`` applies to iterables only.
    """
    if not is_batch_iterable(X):
        if steps is not None:
            raise ValueError(f"steps applies to an iterable of batches; {x_name} is array data (a {type(X).__name__})")
        if labels and y is None:
            # A list of (X_batch, y_batch) pairs looks like "an iterable of pairs" to its author, but is data.
            listed = (f" (a {type(X).__name__} is read as array data: pass iter({x_name}) for one pass, or an object "
                      "whose __iter__ starts a fresh pass each epoch)") if isinstance(X, (list, tuple)) else ""
            raise ValueError(f"{y_name} is missing: pass labels with an array {x_name}, or pass an iterable of "
                             f"(X_batch, y_batch) pairs as {x_name}{listed}")
        y_name = y_name if labels else None
        return (MemmapSource if isinstance(X, np.memmap) else ArraySource)(model, X, y, x_name, y_name)
    if y is not None:
        raise ValueError(f"{x_name} is an iterable of batches, which carries its labels: pass {y_name}=None, "
                         f"not a {type(y).__name__}")
    return IterableSource(model, X, steps, x_name, labels)


def batch_size_for(X: Any, batch_size: int | None, default: int, what: str) -> int:
    """``batch_size`` checked (``default`` when ``None``); an iterable of batches refuses an explicit one.

    Its batches are used as given, so a ``batch_size`` passed with it would be silently ignored (Keras
    refuses it for generators too).
    """
    if batch_size is None:
        return default
    if is_batch_iterable(X):
        raise ValueError(f"{what}: batch_size={batch_size!r} does not apply to X, an iterable of batches "
                         f"(a {type(X).__name__}), whose batches are used as given; leave batch_size out, "
                         "or make the batches that size")
    return as_int(batch_size, "batch_size", minimum=1)


def is_batch_iterable(X: Any) -> bool:
    """Iterables that are not array-like data: generators, iterators, objects with ``__iter__`` but no
    array interface. Lists and tuples are data (nested sequences of numbers), as they always were."""
    if isinstance(X, (list, tuple, str, bytes, dict)) or hasattr(X, "__array__") or hasattr(X, "__array_interface__"):
        return False
    return isinstance(X, Iterable)
