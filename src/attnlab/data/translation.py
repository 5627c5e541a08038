"""Translation data: dataset, length-bucketing batch sampler, collate, and two LightningDataModules.

* :class:`TranslationDataModule` - the generated English -> Veslan corpus
  (:mod:`attnlab.data.synthetic_translation`), word-level tokenizers by default.
* :class:`TranslationFilesDataModule` - parallel plain-text files or TSV files on disk
  (:mod:`attnlab.data.parallel_files`), BPE tokenizers by default.

Both build their source and target tokenizers from the training split only (cached on disk, see
:mod:`attnlab.data.tokenizer`) and produce the same batch, a dict::

    src            LongTensor (B, S)  source ids + <eos>, padded with PAD_ID (0)
    src_mask       BoolTensor (B, S)  True at real tokens (<eos> included)
    src_lengths    LongTensor (B,)    real source length (ids + <eos>)
    tgt_in         LongTensor (B, T)  <bos> + target ids, padded with 0 (decoder input)
    tgt_out        LongTensor (B, T)  target ids + <eos>, padded with 0 (loss target)
    src_text       list[str]          the normalised source sentences
    tgt_text       list[str]          the normalised reference translations (for BLEU)
    src_num_words  LongTensor (B,)    whitespace words in src_text (for BLEU by length)
    index          LongTensor (B,)    each pair's position in its split (test outputs in reference order)

Batches are bucketed by length: the training order is shuffled, cut into mega-batches of
``bucket_factor * batch_size`` examples, each sorted by length and cut into batches, and the
batches shuffled - deterministic for a given ``seed`` and epoch. Validation/test batches come
in length order and are never shuffled.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Iterable, Iterator, Sequence, Sized
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler
from torch.utils.data.distributed import DistributedSampler

from attnlab.data.parallel_files import (
    DataError,
    check_normalization,
    normalize_text,
    read_parallel_text,
    read_tsv,
)
from attnlab.data.synthetic_translation import make_splits
from attnlab.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, TOKENIZER_KINDS, TextTokenizer

log = logging.getLogger(__name__)

Pair = tuple[str, str]
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------------------------------------
# Dataset and collate
# ---------------------------------------------------------------------------------------------


class TranslationDataset(Dataset):
    """Tokenised sentence pairs. Items are dicts with ``src_ids``/``tgt_ids`` (lists of ids,
    no special tokens) and ``src_text``/``tgt_text`` (normalised strings)."""

    def __init__(
        self,
        src_ids: Sequence[list[int]],
        tgt_ids: Sequence[list[int]],
        src_text: Sequence[str],
        tgt_text: Sequence[str],
    ) -> None:
        if not (len(src_ids) == len(tgt_ids) == len(src_text) == len(tgt_text)):
            raise ValueError("src_ids, tgt_ids, src_text and tgt_text must have the same length")
        self.src_ids = list(src_ids)
        self.tgt_ids = list(tgt_ids)
        self.src_text = list(src_text)
        self.tgt_text = list(tgt_text)

    @classmethod
    def from_pairs(cls, pairs: Sequence[Pair], src_tok: TextTokenizer, tgt_tok: TextTokenizer) -> TranslationDataset:
        """Tokenise normalised ``(source, target)`` pairs."""
        src_text = [s for s, _ in pairs]
        tgt_text = [t for _, t in pairs]
        return cls(src_tok.encode_batch(src_text), tgt_tok.encode_batch(tgt_text), src_text, tgt_text)

    def __len__(self) -> int:
        return len(self.src_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "index": i,  # position in the split: test outputs are written back in reference order
            "src_ids": self.src_ids[i],
            "tgt_ids": self.tgt_ids[i],
            "src_text": self.src_text[i],
            "tgt_text": self.tgt_text[i],
        }

    @property
    def src_lengths(self) -> list[int]:
        """Padded-tensor lengths of the source side: ids + ``<eos>``."""
        return [len(x) + 1 for x in self.src_ids]

    @property
    def tgt_lengths(self) -> list[int]:
        """Padded-tensor lengths of the target side: ids + one of ``<bos>``/``<eos>``."""
        return [len(x) + 1 for x in self.tgt_ids]

    def sort_keys(self) -> list[tuple[int, int]]:
        """Bucketing keys: source length, then target length (so both sides pad little)."""
        return list(zip(self.src_lengths, self.tgt_lengths, strict=True))


class TranslationCollator:
    """Pads a list of dataset items into the batch dict described in the module docstring.

    A class rather than a closure so DataLoader workers (spawn) can pickle it.
    """

    def __init__(self, pad_id: int = PAD_ID, bos_id: int = BOS_ID, eos_id: int = EOS_ID) -> None:
        self.pad_id = pad_id
        self.bos_id = bos_id
        self.eos_id = eos_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        b = len(items)
        src_len = torch.tensor([len(it["src_ids"]) + 1 for it in items], dtype=torch.long)
        tgt_len = [len(it["tgt_ids"]) + 1 for it in items]
        s, t = int(src_len.max()), max(tgt_len)
        src = torch.full((b, s), self.pad_id, dtype=torch.long)
        tgt_in = torch.full((b, t), self.pad_id, dtype=torch.long)
        tgt_out = torch.full((b, t), self.pad_id, dtype=torch.long)
        for row, it in enumerate(items):
            src_ids, tgt_ids = it["src_ids"], it["tgt_ids"]
            src[row, : len(src_ids) + 1] = torch.tensor([*src_ids, self.eos_id], dtype=torch.long)
            tgt_in[row, : len(tgt_ids) + 1] = torch.tensor([self.bos_id, *tgt_ids], dtype=torch.long)
            tgt_out[row, : len(tgt_ids) + 1] = torch.tensor([*tgt_ids, self.eos_id], dtype=torch.long)
        src_text = [it["src_text"] for it in items]
        return {
            "src": src,
            "src_mask": torch.arange(s).unsqueeze(0) < src_len.unsqueeze(1),
            "src_lengths": src_len,
            "tgt_in": tgt_in,
            "tgt_out": tgt_out,
            "src_text": src_text,
            "tgt_text": [it["tgt_text"] for it in items],
            "src_num_words": torch.tensor([len(x.split()) for x in src_text], dtype=torch.long),
            **({"index": torch.tensor([it["index"] for it in items], dtype=torch.long)}
               if all("index" in it for it in items) else {}),
        }


# ---------------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------------


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

    def __iter__(self) -> Iterator[int]:
        order = list(range(len(self.data_source)))
        random.Random(self.seed * 1_000_003 + self.epoch).shuffle(order)
        return iter(order)


class BucketBatchSampler(BatchSampler):
    """Batches of examples with similar lengths.

    The indices come from ``sampler`` (so Lightning can inject a ``DistributedSampler``: each
    rank then buckets its own shard). With ``bucketing``, the index stream is cut into
    mega-batches of ``bucket_size`` indices (``None``: the whole stream), each sorted by
    ``lengths[i]`` (any sortable key), and the sorted stream is cut into batches of
    ``batch_size``; only the very last batch can be short. When the sampler shuffles (anything
    but a ``SequentialSampler`` or a non-shuffling ``DistributedSampler``), the batch order is
    shuffled too, seeded by ``(seed, epoch)`` where the epoch is the sampler's (set by Lightning).
    Without ``bucketing`` this is a plain ``BatchSampler`` over ``sampler`` (random batching).
    """

    def __init__(
        self,
        sampler: Sampler[int] | Iterable[int],
        batch_size: int,
        drop_last: bool = False,
        lengths: Sequence[Any] = (),
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
        yield from self._batches()

    def _batches(self) -> list[list[int]]:
        indices = list(self.sampler)
        if self.bucketing:
            size = self.bucket_size or max(1, len(indices))
            ordered: list[int] = []
            for start in range(0, len(indices), size):
                ordered.extend(sorted(indices[start : start + size], key=self.lengths.__getitem__))
            indices = ordered
        batches = [indices[i : i + self.batch_size] for i in range(0, len(indices), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.bucketing and self.shuffles():
            random.Random(self.seed * 1_000_003 + self.epoch + 7).shuffle(batches)
        return batches

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def padding_waste_of(batches: Iterable[Sequence[int]], src_lengths: Sequence[int], tgt_lengths: Sequence[int]) -> float:
    """Fraction of padding in the ``src`` and ``tgt_*`` tensors that ``batches`` (lists of
    dataset indices) would produce; 0 means no padding at all."""
    pad = total = 0
    for batch in batches:
        for lengths in (src_lengths, tgt_lengths):
            lens = [lengths[i] for i in batch]
            slots = len(lens) * max(lens)
            total += slots
            pad += slots - sum(lens)
    return pad / total if total else 0.0


def padding_waste(loader: DataLoader) -> float:
    """Padding fraction of one epoch of ``loader`` (a loader over a :class:`TranslationDataset`),
    computed from its batch sampler's indices without collating anything."""
    ds = loader.dataset
    if not isinstance(ds, TranslationDataset) or loader.batch_sampler is None:
        raise TypeError("padding_waste needs a DataLoader over a TranslationDataset with a batch sampler")
    return padding_waste_of(loader.batch_sampler, ds.src_lengths, ds.tgt_lengths)


# ---------------------------------------------------------------------------------------------
# DataModules
# ---------------------------------------------------------------------------------------------


class _TranslationDataModuleBase(pl.LightningDataModule):
    """Shared machinery: tokenizers from the train split, datasets, bucketed loaders, model kwargs.

    Subclasses implement :meth:`load_pairs`, returning normalised ``(source, target)`` pairs
    per split (``train``, ``val``, ``test``).
    """

    default_tokenizer = "word"

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        bucketing: bool = True,
        bucket_factor: int = 50,
        drop_last: bool = False,
        seed: int = 0,
        tokenizer: str | None = None,
        src_vocab_size: int = 8000,
        tgt_vocab_size: int = 8000,
        min_frequency: int = 1,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        tokenizer = tokenizer or self.default_tokenizer
        if tokenizer not in TOKENIZER_KINDS:
            raise DataError(f"data.tokenizer={tokenizer!r} is unknown; use one of {TOKENIZER_KINDS}")
        if batch_size < 1:
            raise DataError(f"data.batch_size must be at least 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.bucketing = bool(bucketing)
        self.bucket_factor = int(bucket_factor)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.tokenizer_kind = tokenizer
        self.src_vocab_size = int(src_vocab_size)
        self.tgt_vocab_size = int(tgt_vocab_size)
        self.min_frequency = int(min_frequency)
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        if self.num_workers > 0:
            # Workers only collate; this keeps HF tokenizers from warning about a fork after its
            # thread pool was used in setup().
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

        self.pairs: dict[str, list[Pair]] = {}
        self.datasets: dict[str, TranslationDataset] = {}
        self.src_tokenizer: TextTokenizer | None = None
        self.tgt_tokenizer: TextTokenizer | None = None
        self.collate = TranslationCollator()

    # -- to implement -----------------------------------------------------------------------

    def load_pairs(self) -> dict[str, list[Pair]]:
        """Normalised pairs for ``train``, ``val`` and ``test``."""
        raise NotImplementedError

    def filter_train(self, dataset: TranslationDataset) -> TranslationDataset:
        """Hook to drop training examples after tokenisation (e.g. a length limit)."""
        return dataset

    # -- Lightning hooks --------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Load every split, train (or load cached) tokenizers on train, tokenise. Idempotent."""
        if self.datasets:
            return
        pairs = self.load_pairs()
        for split in SPLITS:
            if not pairs.get(split):
                raise DataError(f"the {split} split is empty: {self._describe_split(split)} holds no sentence pair")
        train = pairs["train"]
        self.src_tokenizer = TextTokenizer.train(
            [s for s, _ in train], self.tokenizer_kind, self.src_vocab_size, self.min_frequency, self.cache_dir
        )
        self.tgt_tokenizer = TextTokenizer.train(
            [t for _, t in train], self.tokenizer_kind, self.tgt_vocab_size, self.min_frequency, self.cache_dir
        )
        datasets = {
            split: TranslationDataset.from_pairs(pairs[split], self.src_tokenizer, self.tgt_tokenizer) for split in SPLITS
        }
        datasets["train"] = self.filter_train(datasets["train"])
        if len(datasets["train"]) == 0:
            raise DataError(f"the train split is empty after filtering: {self._describe_split('train')}")
        self.pairs, self.datasets = pairs, datasets
        self._log_summary()

    def train_dataloader(self) -> DataLoader:
        ds = self._dataset("train")
        # Trainer(overfit_batches=n) wants the same batches every epoch. Lightning only notices
        # shuffling through `loader.sampler` (unused when a batch sampler is given), so ask it.
        overfit = self.trainer is not None and bool(getattr(self.trainer, "overfit_batches", 0))
        sampler = BucketBatchSampler(
            SequentialSampler(ds) if overfit else EpochRandomSampler(ds, seed=self.seed),
            self.batch_size,
            self.drop_last,
            lengths=ds.sort_keys(),
            bucket_size=self.batch_size * self.bucket_factor,
            seed=self.seed,
            bucketing=self.bucketing,
        )
        return self._loader(ds, sampler)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    # -- what the model and the callbacks need ----------------------------------------------

    def model_kwargs(self) -> dict[str, Any]:
        """Data-dependent constructor arguments of the translation task (call after ``setup``)."""
        src, tgt = self._tokenizers()
        return {
            "src_vocab_size": src.vocab_size,
            "tgt_vocab_size": tgt.vocab_size,
            "pad_id": PAD_ID,
            "bos_id": BOS_ID,
            "eos_id": EOS_ID,
            "src_tokenizer_json": src.to_json(),
            "tgt_tokenizer_json": tgt.to_json(),
        }

    def fixed_examples(self, n: int = 4) -> list[Pair]:
        """``n`` fixed validation pairs of spread-out lengths (10th to 90th length percentile),
        the same on every run: material for attention heat maps."""
        val = self._pairs("val")
        order = sorted(range(len(val)), key=lambda i: (len(val[i][0].split()), i))
        if n <= 0:
            return []
        if n == 1:
            picks = [order[len(order) // 2]]
        else:
            picks = [order[round((0.1 + 0.8 * k / (n - 1)) * (len(order) - 1))] for k in range(n)]
        seen: list[int] = []
        for i in picks + order:  # top up with other pairs if percentiles coincide (tiny val sets)
            if i not in seen:
                seen.append(i)
            if len(seen) == min(n, len(order)):
                break
        rank = {i: r for r, i in enumerate(order)}
        return [val[i] for i in sorted(seen, key=rank.__getitem__)]

    def padding_waste(self, loader: DataLoader) -> float:
        """Fraction of pad tokens in one epoch of ``loader`` (see :func:`padding_waste`)."""
        return padding_waste(loader)

    # -- helpers ----------------------------------------------------------------------------

    def _tokenizers(self) -> tuple[TextTokenizer, TextTokenizer]:
        if self.src_tokenizer is None or self.tgt_tokenizer is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before the tokenizers are used")
        return self.src_tokenizer, self.tgt_tokenizer

    def _dataset(self, split: str) -> TranslationDataset:
        if split not in self.datasets:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before the {split} dataloader is built")
        return self.datasets[split]

    def _pairs(self, split: str) -> list[Pair]:
        if split not in self.pairs:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its {split} pairs are used")
        return self.pairs[split]

    def _eval_loader(self, split: str) -> DataLoader:
        ds = self._dataset(split)
        sampler = BucketBatchSampler(
            SequentialSampler(ds),
            self.eval_batch_size,
            False,
            lengths=ds.sort_keys(),
            bucket_size=None,  # sort the whole split: fewest pads, fixed order
            seed=self.seed,
            bucketing=self.bucketing,
        )
        return self._loader(ds, sampler)

    def _loader(self, ds: TranslationDataset, batch_sampler: BucketBatchSampler) -> DataLoader:
        return DataLoader(
            ds,
            batch_sampler=batch_sampler,
            collate_fn=self.collate,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def _describe_split(self, split: str) -> str:
        return f"the generated {split} split"

    def _log_summary(self) -> None:
        src, tgt = self._tokenizers()
        sizes = ", ".join(f"{s} {len(self.datasets[s])}" for s in SPLITS)
        log.info(
            "translation data: %s pairs; %s tokenizers, vocab src %d / tgt %d",
            sizes,
            self.tokenizer_kind,
            src.vocab_size,
            tgt.vocab_size,
        )
        ds = self.datasets["train"]
        bucketed = padding_waste(self.train_dataloader())
        random_batches = BucketBatchSampler(
            EpochRandomSampler(ds, seed=self.seed), self.batch_size, self.drop_last, ds.sort_keys(), bucketing=False
        )
        unbucketed = padding_waste_of(random_batches, ds.src_lengths, ds.tgt_lengths)
        log.info(
            "padding waste of train batches: %.1f%% %s (random batching: %.1f%%)",
            100 * bucketed,
            "bucketed" if self.bucketing else "unbucketed",
            100 * unbucketed,
        )


class TranslationDataModule(_TranslationDataModuleBase):
    """The generated English -> Veslan corpus (see :mod:`attnlab.data.synthetic_translation`).

    ``corpus_seed`` fixes the sentences (and ``min_len``/``max_len`` their source length in
    whitespace words, the final ``.`` included); ``seed`` fixes the batch order. Val and test hold no source sentence that
    is in train.
    """

    default_tokenizer = "word"

    def __init__(
        self,
        n_train: int = 30000,
        n_val: int = 500,
        n_test: int = 1000,
        min_len: int = 3,
        max_len: int = 50,
        corpus_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.n_train, self.n_val, self.n_test = int(n_train), int(n_val), int(n_test)
        self.min_len, self.max_len = int(min_len), int(max_len)
        self.corpus_seed = int(corpus_seed)

    def load_pairs(self) -> dict[str, list[Pair]]:
        try:
            return make_splits(self.n_train, self.n_val, self.n_test, self.corpus_seed, self.min_len, self.max_len)
        except ValueError as err:
            raise DataError(f"cannot generate the translation corpus: {err}") from None

    def _describe_split(self, split: str) -> str:
        return f"the generated {split} split (data.n_{split})"


class TranslationFilesDataModule(_TranslationDataModuleBase):
    """Parallel corpora from disk (``format: text`` or ``format: tsv``), BPE tokenizers by default.

    * ``text``: ``{train,val,test}_src`` and ``{train,val,test}_tgt``, one sentence per line,
      line i of the source translating line i of the target.
    * ``tsv``: ``{train,val,test}_tsv`` with the source in column ``tsv_src_col`` and the target
      in ``tsv_tgt_col`` (0-based; other columns ignored).

    Train and val are required; without a test split the val split is used for testing (with a
    warning). Pairs with an empty side are dropped. ``max_len`` drops *training* pairs with more
    than ``max_len`` tokens (after tokenisation) on either side; evaluation splits are kept whole.
    """

    default_tokenizer = "bpe"

    def __init__(
        self,
        format: str = "text",
        train_src: str | None = None,
        train_tgt: str | None = None,
        val_src: str | None = None,
        val_tgt: str | None = None,
        test_src: str | None = None,
        test_tgt: str | None = None,
        train_tsv: str | None = None,
        val_tsv: str | None = None,
        test_tsv: str | None = None,
        tsv_src_col: int = 0,
        tsv_tgt_col: int = 1,
        max_len: int | None = 100,
        lowercase: bool = False,
        normalize: str | None = "NFKC",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("min_frequency", 2)
        super().__init__(**kwargs)
        if format not in ("text", "tsv"):
            raise DataError(f"data.format={format!r} is unknown; use data.format=text or data.format=tsv")
        self.format = format
        self.paths = {
            "train_src": train_src,
            "train_tgt": train_tgt,
            "val_src": val_src,
            "val_tgt": val_tgt,
            "test_src": test_src,
            "test_tgt": test_tgt,
            "train_tsv": train_tsv,
            "val_tsv": val_tsv,
            "test_tsv": test_tsv,
        }
        self.tsv_src_col, self.tsv_tgt_col = int(tsv_src_col), int(tsv_tgt_col)
        self.max_len = None if max_len is None else int(max_len)
        self.lowercase = bool(lowercase)
        self.normalize = check_normalization(normalize)
        self.n_dropped_long = 0

    def _hint(self) -> str:
        return (
            "set data.train_src=... data.train_tgt=... data.val_src=... data.val_tgt=... "
            "(or data.format=tsv data.train_tsv=... data.val_tsv=...)"
        )

    def _split_keys(self, split: str) -> tuple[str, ...]:
        return (f"{split}_tsv",) if self.format == "tsv" else (f"{split}_src", f"{split}_tgt")

    def _describe_split(self, split: str) -> str:
        keys = self._split_keys(split)
        if split == "test" and all(self.paths[k] is None for k in keys):
            keys = self._split_keys("val")
        return " + ".join(f"{self.paths[k]} (data.{k})" for k in keys)

    def _read_split(self, split: str) -> list[Pair]:
        if self.format == "tsv":
            key = f"{split}_tsv"
            raw = read_tsv(self.paths[key], key, self.tsv_src_col, self.tsv_tgt_col, hint=self._hint())
        else:
            raw = read_parallel_text(
                self.paths[f"{split}_src"],
                self.paths[f"{split}_tgt"],
                f"{split}_src",
                f"{split}_tgt",
                hint=self._hint(),
            )
        def norm(text: str) -> str:
            return normalize_text(text, self.lowercase, self.normalize)

        pairs = [(norm(s), norm(t)) for s, t in raw]
        kept = [(s, t) for s, t in pairs if s and t]
        if len(kept) < len(pairs):
            log.warning("%s split: dropped %d pair(s) with an empty side", split, len(pairs) - len(kept))
        return kept

    def load_pairs(self) -> dict[str, list[Pair]]:
        out = {"train": self._read_split("train"), "val": self._read_split("val")}
        if all(self.paths[k] is None for k in self._split_keys("test")):
            log.warning("no test split configured (%s); testing on the val split", " / ".join(self._split_keys("test")))
            out["test"] = out["val"]
        else:
            out["test"] = self._read_split("test")
        return out

    def filter_train(self, dataset: TranslationDataset) -> TranslationDataset:
        if self.max_len is None:
            return dataset
        keep = [
            i
            for i in range(len(dataset))
            if len(dataset.src_ids[i]) <= self.max_len and len(dataset.tgt_ids[i]) <= self.max_len
        ]
        self.n_dropped_long = len(dataset) - len(keep)
        if self.n_dropped_long:
            log.info(
                "train split: dropped %d pair(s) longer than data.max_len=%d tokens", self.n_dropped_long, self.max_len
            )
        return TranslationDataset(
            [dataset.src_ids[i] for i in keep],
            [dataset.tgt_ids[i] for i in keep],
            [dataset.src_text[i] for i in keep],
            [dataset.tgt_text[i] for i in keep],
        )
