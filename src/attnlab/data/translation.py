"""Translation data: two LightningDataModules over a built-once, memory-mapped token store.

* :class:`TranslationDataModule` - the generated English -> Veslan corpus
  (:mod:`attnlab.data.synthetic_translation`), word-level tokenizers by default.
* :class:`TranslationFilesDataModule` - parallel plain-text files or TSV files on disk
  (:mod:`attnlab.data.parallel_files`), BPE tokenizers by default.

Both tokenize their corpus once per content and settings into a token store under
``<cache_dir>/corpora/`` that every later run, sweep job and DDP rank maps; the batch format,
bucketing and the store are described in :mod:`attnlab.data.translation_base`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

from attnlab.data.content_cache import file_digest
from attnlab.data.parallel_files import (
    check_normalization,
    iter_parallel_text,
    iter_tsv,
    normalize_text,
    resolve_file,
)
from attnlab.data.synthetic_translation import make_splits
from attnlab.data.token_store import corpus_cache
from attnlab.data.translation_base import SPLITS, Pair, TranslationDataModuleBase
from attnlab.errors import DataError

__all__ = ["TranslationDataModule", "TranslationFilesDataModule"]

log = logging.getLogger(__name__)

#: Bump when normalize_text changes what it returns (part of the files' cache key).
NORMALIZATION_VERSION = 1
#: The generator's code: the store of a generated corpus is keyed by it, so a grammar change builds a new one.
_GENERATOR_SOURCES = tuple(Path(__file__).with_name(name) for name in ("synthetic_translation.py", "veslan_lexicon.py"))


class TranslationDataModule(TranslationDataModuleBase):
    """The generated English -> Veslan corpus (see :mod:`attnlab.data.synthetic_translation`).

    ``corpus_seed`` fixes the sentences (and ``min_len``/``max_len`` their source length in
    whitespace words, the final ``.`` included); ``seed`` fixes the batch order. Val and test hold
    no source sentence that is in train. The store is keyed by these settings and by the
    generator's source code, so a change to the grammar builds a new one.
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

    def corpus_settings(self) -> dict[str, Any]:
        return {
            "generator": "synthetic_translation",
            "generator_source": [file_digest(path, None) for path in _GENERATOR_SOURCES],
            "n": [self.n_train, self.n_val, self.n_test],
            "min_len": self.min_len,
            "max_len": self.max_len,
            "corpus_seed": self.corpus_seed,
        }

    def split_sources(self) -> dict[str, Callable[[], Iterable[Pair]]]:
        try:
            splits = make_splits(self.n_train, self.n_val, self.n_test, self.corpus_seed, self.min_len, self.max_len)
        except ValueError as err:
            raise DataError(f"cannot generate the translation corpus: {err}") from None
        return {name: partial(splits.__getitem__, name) for name in SPLITS}

    def _describe_split(self, split: str) -> str:
        return f"the generated {split} split (data.n_{split})"


class TranslationFilesDataModule(TranslationDataModuleBase):
    """Parallel corpora from disk (``format: text`` or ``format: tsv``), BPE tokenizers by default.

    * ``text``: ``{train,val,test}_src`` and ``{train,val,test}_tgt``, one sentence per line,
      line i of the source translating line i of the target.
    * ``tsv``: ``{train,val,test}_tsv`` with the source in column ``tsv_src_col`` and the target
      in ``tsv_tgt_col`` (0-based; other columns ignored).

    Train and val are required; without a test split the val split is used for testing (with a
    warning). Pairs with an empty side are dropped. ``max_len`` drops *training* pairs with more
    than ``max_len`` tokens (after tokenisation) on either side; evaluation splits are kept whole
    (their ids are cut to ``eval_max_len``, their text never). Files are streamed, never held.
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
        if self.format == "tsv" and (self.tsv_src_col < 0 or self.tsv_tgt_col < 0 or tsv_src_col == tsv_tgt_col):
            raise DataError(
                f"data.tsv_src_col={tsv_src_col} and data.tsv_tgt_col={tsv_tgt_col}: need two different "
                "non-negative column indices"
            )
        self.max_len = None if max_len is None else int(max_len)
        self.lowercase = bool(lowercase)
        self.normalize = check_normalization(normalize)
        self.n_dropped_long = 0

    @property
    def train_max_len(self) -> int | None:
        return self.max_len

    def _hint(self) -> str:
        return (
            "set data.train_src=... data.train_tgt=... data.val_src=... data.val_tgt=... "
            "(or data.format=tsv data.train_tsv=... data.val_tsv=...)"
        )

    def _split_keys(self, split: str) -> tuple[str, ...]:
        return (f"{split}_tsv",) if self.format == "tsv" else (f"{split}_src", f"{split}_tgt")

    def _test_from_val(self) -> bool:
        return all(self.paths[k] is None for k in self._split_keys("test"))

    def _source_split(self, split: str) -> str:
        return "val" if split == "test" and self._test_from_val() else split

    def _describe_split(self, split: str) -> str:
        keys = self._split_keys(self._source_split(split))
        return " + ".join(f"{self.paths[k]} (data.{k})" for k in keys)

    def corpus_settings(self) -> dict[str, Any]:
        """The files' content digests (checked paths, in config order) and how they are read."""
        cache = corpus_cache(self.cache_dir)
        files = {}
        for split in SPLITS:
            for key in self._split_keys(self._source_split(split)):
                files[key] = cache.digest(resolve_file(self.paths[key], key, self._hint()))
        out: dict[str, Any] = {"format": self.format, "files": files, "test_from_val": self._test_from_val(),
                               "normalize": self.normalize, "lowercase": self.lowercase,
                               "normalization_version": NORMALIZATION_VERSION}
        if self.format == "tsv":
            out["tsv_cols"] = [self.tsv_src_col, self.tsv_tgt_col]
        return out

    def _pairs(self, split: str) -> Iterable[Pair]:
        if self.format == "tsv":
            key = f"{split}_tsv"
            raw = iter_tsv(self.paths[key], key, self.tsv_src_col, self.tsv_tgt_col, hint=self._hint())
        else:
            raw = iter_parallel_text(
                self.paths[f"{split}_src"], self.paths[f"{split}_tgt"], f"{split}_src", f"{split}_tgt",
                hint=self._hint(),
            )
        lowercase, form = self.lowercase, self.normalize
        return ((normalize_text(s, lowercase, form), normalize_text(t, lowercase, form)) for s, t in raw)

    def split_sources(self) -> dict[str, Callable[[], Iterable[Pair]]]:
        return {split: partial(self._pairs, self._source_split(split)) for split in SPLITS}

    def setup(self, stage: str | None = None) -> None:
        first = not self.datasets
        if first and self._test_from_val():
            log.warning("no test split configured (%s); testing on the val split", " / ".join(self._split_keys("test")))
        super().setup(stage)
        if not first or self.store is None:
            return
        self.n_dropped_long = int(self.store.manifest["splits"]["train"]["dropped_long"])
        if self.n_dropped_long:
            log.info(
                "train split: dropped %d pair(s) longer than data.max_len=%d tokens", self.n_dropped_long, self.max_len
            )
