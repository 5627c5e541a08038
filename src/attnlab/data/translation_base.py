"""What both translation DataModules share (:mod:`attnlab.data.translation` has the two).

Both tokenize their corpus once per content and settings into a token store
(:mod:`attnlab.data.corpus_build`, :mod:`attnlab.data.token_store`) under
``<cache_dir>/corpora/``, shared by every later run, sweep job and DDP rank
(:mod:`attnlab.data.content_cache`), and produce the same batch, a dict::

    src            LongTensor (B, S)  source ids + <eos>, padded with PAD_ID (0)
    src_mask       BoolTensor (B, S)  True at real tokens (<eos> included)
    src_lengths    LongTensor (B,)    real source length (ids + <eos>)
    tgt_in         LongTensor (B, T)  <bos> + target ids, padded with 0 (decoder input)
    tgt_out        LongTensor (B, T)  target ids + <eos>, padded with 0 (loss target)
    src_text       list[str]          the normalised source sentences (training: decoded from the ids)
    tgt_text       list[str]          the normalised reference translations (for BLEU)
    src_num_words  LongTensor (B,)    whitespace words in the source sentence (for BLEU by length)
    index          LongTensor (B,)    each pair's position in its split (test outputs in reference order)

Batches are bucketed by length (:mod:`attnlab.data.samplers`): the training order is shuffled,
cut into mega-batches of ``bucket_factor * batch_size`` examples, each sorted by length and cut
into batches, and the batches shuffled - deterministic for a given ``seed`` and epoch.
Validation/test batches come in length order and are never shuffled; their ids are cut to
``eval_max_len`` tokens (a warning counts such pairs) while BLEU scores the full reference.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import tokenizers as hf_tokenizers
from torch.utils.data import DataLoader, SequentialSampler

from attnlab.data.content_cache import cache_key
from attnlab.data.corpus_build import BuildSpec, build_store
from attnlab.data.samplers import BucketBatchSampler, EpochRandomSampler, padding_waste_of, padding_waste_of_order
from attnlab.data.token_store import STORE_FORMAT, TokenStore, corpus_cache, store_is_complete
from attnlab.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, TOKENIZER_KINDS, TextTokenizer, pipeline_settings
from attnlab.data.translation_dataset import TranslationCollator, TranslationDataset
from attnlab.errors import DataError

__all__ = ["SPLITS", "Pair", "TranslationDataModuleBase", "padding_waste"]

log = logging.getLogger(__name__)

Pair = tuple[str, str]
SPLITS = ("train", "val", "test")
#: Examples the padding-waste log line looks at (the default corpus' whole epoch fits).
_WASTE_SAMPLE = 200_000


def padding_waste(loader: DataLoader) -> float:
    """Padding fraction of one epoch of ``loader`` (a loader over a :class:`TranslationDataset`),
    computed from its batch sampler's indices without collating anything."""
    ds = loader.dataset
    sampler = loader.batch_sampler
    if not isinstance(ds, TranslationDataset) or sampler is None:
        raise TypeError("padding_waste needs a DataLoader over a TranslationDataset with a batch sampler")
    if isinstance(sampler, BucketBatchSampler):
        return padding_waste_of_order(
            sampler.ordered_indices(), sampler.batch_size, ds.src_lengths, ds.tgt_lengths, sampler.drop_last
        )
    return padding_waste_of(sampler, ds.src_lengths, ds.tgt_lengths)


class _PairsView(Sequence[Pair]):
    """(source, reference) pairs of an evaluation split, read from the store on access."""

    def __init__(self, ds: TranslationDataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> Pair:  # type: ignore[override]
        return self.ds.src_text[i], self.ds.tgt_text[i]

    def __iter__(self) -> Iterator[Pair]:
        for i in range(len(self)):
            yield self[i]


class TranslationDataModuleBase(pl.LightningDataModule):
    """Shared machinery: the token store, datasets, bucketed loaders, model kwargs.

    Subclasses describe their corpus: :meth:`corpus_settings` (what identifies its content, for
    the cache key; checks the configured paths) and :meth:`split_sources` (functions returning
    each split's normalised ``(source, target)`` pairs, called only when the store is built).
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
        tokenizer_sample: int = 300_000,
        eval_max_len: int | None = 256,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        tokenizer = tokenizer or self.default_tokenizer
        if tokenizer not in TOKENIZER_KINDS:
            raise DataError(f"data.tokenizer={tokenizer!r} is unknown; use one of {TOKENIZER_KINDS}")
        if batch_size < 1:
            raise DataError(f"data.batch_size must be at least 1, got {batch_size}")
        if int(tokenizer_sample) < 1:
            raise DataError(f"data.tokenizer_sample must be at least 1 sentence, got {tokenizer_sample}")
        if eval_max_len is not None and int(eval_max_len) < 1:
            raise DataError(f"data.eval_max_len must be a positive number of tokens or null, got {eval_max_len}")
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
        self.tokenizer_sample = int(tokenizer_sample)
        self.eval_max_len = None if eval_max_len is None else int(eval_max_len)
        self.cache_dir = None if cache_dir is None else str(cache_dir)
        if self.num_workers > 0:
            # Workers only collate; this keeps HF tokenizers from warning about a fork after its
            # thread pool was used in setup().
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

        self.store: TokenStore | None = None
        self.pairs: dict[str, Sequence[Pair]] = {}
        self.datasets: dict[str, TranslationDataset] = {}
        self.src_tokenizer: TextTokenizer | None = None
        self.tgt_tokenizer: TextTokenizer | None = None
        self.collate = TranslationCollator()

    # -- to implement -----------------------------------------------------------------------

    def corpus_settings(self) -> dict[str, Any]:
        """What identifies the corpus content (part of the store's cache key)."""
        raise NotImplementedError

    def split_sources(self) -> dict[str, Callable[[], Iterable[Pair]]]:
        """For ``train``, ``val`` and ``test``: a function returning that split's normalised pairs."""
        raise NotImplementedError

    @property
    def train_max_len(self) -> int | None:
        """Training pairs with more tokens on either side are dropped when the store is built."""
        return None

    # -- the store --------------------------------------------------------------------------

    def build_spec(self) -> BuildSpec:
        return BuildSpec(self.tokenizer_kind, self.src_vocab_size, self.tgt_vocab_size, self.min_frequency,
                         self.tokenizer_sample, self.train_max_len)

    def store_settings(self) -> dict[str, Any]:
        """Everything the store's ids depend on: its cache key is a hash of this."""
        return {
            "store_format": STORE_FORMAT,
            "tokenizers_library": hf_tokenizers.__version__,
            "tokenizer_pipeline": pipeline_settings(),
            "build": self.build_spec().as_dict(),
            "corpus": self.corpus_settings(),
        }

    def open_store(self) -> TokenStore:
        """Map this corpus' store, building it first if no process has (once, under a file lock)."""
        if self.store is None:
            settings = self.store_settings()
            spec = self.build_spec()

            def build(folder: Any) -> None:
                build_store(folder, self.split_sources(), spec, self._describe_split, settings)

            cache = corpus_cache(self.cache_dir)
            path, _ = cache.get_or_build(cache_key(settings), build, store_is_complete, type(self).__name__)
            self.store = TokenStore(path)
        return self.store

    # -- Lightning hooks --------------------------------------------------------------------

    def prepare_data(self) -> None:
        """Build the store if needed (Lightning calls this on one process per node)."""
        self.open_store()

    def setup(self, stage: str | None = None) -> None:
        """Map the store (building it if needed), load its tokenizers, make the datasets. Idempotent."""
        if self.datasets:
            return
        store = self.open_store()
        self.src_tokenizer = TextTokenizer.from_json(store.tokenizer_json("src"))
        self.tgt_tokenizer = TextTokenizer.from_json(store.tokenizer_json("tgt"))
        self.src_tokenizer.kind = self.tgt_tokenizer.kind = self.tokenizer_kind
        tokenizers = (self.src_tokenizer, self.tgt_tokenizer)
        self.datasets = {
            "train": TranslationDataset(store, "train", tokenizers),
            "val": TranslationDataset(store, "val", tokenizers, self.eval_max_len),
            "test": TranslationDataset(store, "test", tokenizers, self.eval_max_len),
        }
        self.pairs = {split: _PairsView(self.datasets[split]) for split in ("val", "test")}
        self._report_store(store)
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
        ds = self._dataset("val")
        order = np.argsort(np.asarray(ds.split.src_words), kind="stable").tolist()  # by words, then index
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
        val = self.pairs["val"]
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

    def _report_store(self, store: TokenStore) -> None:
        """What the build dropped, and the evaluation pairs whose ids are cut (one warning)."""
        for split, info in store.manifest["splits"].items():
            if info.get("dropped_empty"):
                log.warning("%s split: dropped %d pair(s) with an empty side", split, info["dropped_empty"])
        cut = {split: self.datasets[split].n_truncated for split in ("val", "test")}
        if any(cut.values()):
            log.warning(
                "%d val and %d test pair(s) have more than data.eval_max_len=%d tokens on a side: their ids are "
                "cut to %d tokens for decoding and the loss; BLEU still scores against the full reference text",
                cut["val"], cut["test"], self.eval_max_len, self.eval_max_len,
            )

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
        # Estimated on whole mega-batches covering at most _WASTE_SAMPLE examples: the figure settles
        # long before that, and a 4.5M-pair epoch would cost seconds and hundreds of MB per start.
        sampler = self.train_dataloader().batch_sampler
        assert isinstance(sampler, BucketBatchSampler)
        bucketed = padding_waste_of_order(
            sampler.ordered_indices(limit=_WASTE_SAMPLE), self.batch_size, ds.src_lengths, ds.tgt_lengths
        )
        order = EpochRandomSampler(ds, seed=self.seed).order()[:_WASTE_SAMPLE]
        unbucketed = padding_waste_of_order(order, self.batch_size, ds.src_lengths, ds.tgt_lengths, self.drop_last)
        log.info(
            "padding waste of train batches: %.1f%% %s (random batching: %.1f%%)",
            100 * bucketed,
            "bucketed" if self.bucketing else "unbucketed",
            100 * unbucketed,
        )

