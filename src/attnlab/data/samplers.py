"""Length-bucketing batch sampler and the seeded per-epoch shuffle it draws from.

Both work on numpy arrays (a length key per example), never on the examples, so a 4.5M-pair
corpus costs a few tens of MB of index arrays per epoch rather than millions of Python objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any

import numpy as np
from torch.utils.data import BatchSampler, RandomSampler, Sampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

__all__ = ["BucketBatchSampler", "EpochRandomSampler", "padding_waste_of", "padding_waste_of_order"]


def _rng(seed: int, epoch: int, salt: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), salt])


class EpochRandomSampler(RandomSampler):
    """A random permutation per epoch, seeded by ``(seed, epoch)``: the same order on every run.

    It is a :class:`RandomSampler`, so Lightning treats the loader as shuffled (it swaps it for a
    ``DistributedSampler`` under DDP, and for a ``SequentialSampler`` under ``overfit_batches``),
    and Lightning calls :meth:`set_epoch` on it at the start of every training epoch.
    """

    def __init__(self, data_source: Sized, seed: int = 0) -> None:
        super().__init__(data_source)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def order(self) -> np.ndarray:
        """This epoch's permutation as an int64 array."""
        return _rng(self.seed, self.epoch).permutation(len(self.data_source))

    def __iter__(self) -> Iterator[int]:
        return iter(self.order().tolist())


def _indices(sampler: Any) -> np.ndarray:
    if isinstance(sampler, EpochRandomSampler):
        return sampler.order()
    if isinstance(sampler, SequentialSampler):
        return np.arange(len(sampler.data_source), dtype=np.int64)
    return np.fromiter(iter(sampler), dtype=np.int64)


def _stable_order(keys: np.ndarray) -> np.ndarray:
    """Stable sort order of one key per row (a column of keys: the first column sorts first)."""
    if keys.ndim == 1:
        return np.argsort(keys, kind="stable")
    return np.lexsort(keys.T[::-1])


class BucketBatchSampler(BatchSampler):
    """Batches of examples with similar lengths.

    The indices come from ``sampler`` (so Lightning can inject a ``DistributedSampler``: each
    rank then buckets its own shard). With ``bucketing``, the index stream is cut into
    mega-batches of ``bucket_size`` indices (``None``: the whole stream), each sorted (stably)
    by ``lengths[i]`` - a numeric key per example, e.g. source length then target length packed
    into one int64 - and the sorted stream is cut into batches of ``batch_size``; only the very
    last batch can be short. When the sampler shuffles (anything but a ``SequentialSampler`` or a
    non-shuffling ``DistributedSampler``), the batch order is shuffled too, seeded by
    ``(seed, epoch)`` where the epoch is the sampler's (set by Lightning). Without ``bucketing``
    this is a plain ``BatchSampler`` over ``sampler`` (random batching).
    """

    def __init__(
        self,
        sampler: Sampler[int] | Iterable[int],
        batch_size: int,
        drop_last: bool = False,
        lengths: Sequence[Any] | np.ndarray = (),
        bucket_size: int | None = None,
        seed: int = 0,
        bucketing: bool = True,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        if bucket_size is not None and bucket_size < 1:
            raise ValueError(f"bucket_size must be positive or None, got {bucket_size}")
        self.lengths = lengths
        self.bucket_size = bucket_size
        self.seed = int(seed)
        self.bucketing = bool(bucketing)
        self._epoch = 0

    @property
    def epoch(self) -> int:
        return int(getattr(self.sampler, "epoch", self._epoch))

    def set_epoch(self, epoch: int) -> None:
        """For plain PyTorch loops (Lightning sets the epoch on ``self.sampler``)."""
        self._epoch = int(epoch)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def shuffles(self) -> bool:
        """Whether the batch order is shuffled (follows whether the index sampler shuffles)."""
        s = self.sampler
        if isinstance(s, SequentialSampler):
            return False
        if isinstance(s, DistributedSampler):
            return bool(s.shuffle)
        return isinstance(s, RandomSampler) or bool(getattr(s, "shuffle", False))

    def __iter__(self) -> Iterator[list[int]]:
        # A generator, so the order is drawn at the first batch, not when the iterator is made: on a
        # resume Lightning makes the train iterator before it gives the sampler the resumed epoch,
        # and an eager order would replay epoch 0 (2+2 epochs would then differ from 4 straight).
        for batch in self.batch_arrays():
            yield batch.tolist()

    def ordered_indices(self, limit: int | None = None) -> np.ndarray:
        """This epoch's indices in batch-cutting order (each mega-batch sorted by length); with
        ``limit``, only the whole mega-batches that hold the first ``limit`` indices (a sample)."""
        indices = _indices(self.sampler)
        if limit is not None and self.bucketing and self.bucket_size:
            indices = indices[: -(-limit // self.bucket_size) * self.bucket_size]
        elif limit is not None:
            indices = indices[:limit]
        if not self.bucketing or len(indices) == 0:
            return indices
        keys = np.asarray(self.lengths)[indices]
        size = self.bucket_size or len(indices)
        parts = [
            indices[start : start + size][_stable_order(keys[start : start + size])]
            for start in range(0, len(indices), size)
        ]
        return np.concatenate(parts)

    def batch_arrays(self) -> list[np.ndarray]:
        """This epoch's batches as index arrays, in the order they are served."""
        ordered = self.ordered_indices()
        batches = [ordered[i : i + self.batch_size] for i in range(0, len(ordered), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.bucketing and self.shuffles():
            perm = _rng(self.seed, self.epoch, 7).permutation(len(batches))
            batches = [batches[i] for i in perm]
        return batches

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def padding_waste_of_order(
    ordered: np.ndarray, batch_size: int, src_lengths: np.ndarray, tgt_lengths: np.ndarray, drop_last: bool = False
) -> float:
    """Padding fraction of the batches cut every ``batch_size`` from ``ordered`` (vectorised)."""
    n = len(ordered)
    if drop_last:
        n -= n % batch_size
    if n == 0:
        return 0.0
    starts = np.arange(0, n, batch_size)
    sizes = np.diff(np.append(starts, n))
    pad = total = 0
    for lengths in (src_lengths, tgt_lengths):
        lens = np.asarray(lengths, dtype=np.int64)[ordered[:n]]
        slots = int((np.maximum.reduceat(lens, starts) * sizes).sum())
        total += slots
        pad += slots - int(lens.sum())
    return pad / total if total else 0.0


def padding_waste_of(
    batches: Iterable[Sequence[int]], src_lengths: Sequence[int], tgt_lengths: Sequence[int]
) -> float:
    """Fraction of padding in the ``src`` and ``tgt_*`` tensors that ``batches`` (lists of
    dataset indices) would produce; 0 means no padding at all."""
    pad = total = 0
    for batch in batches:
        for lengths in (src_lengths, tgt_lengths):
            lens = [int(lengths[i]) for i in batch]
            slots = len(lens) * max(lens)
            total += slots
            pad += slots - sum(lens)
    return pad / total if total else 0.0
