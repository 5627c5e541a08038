"""Word-level and BPE tokenizers (HF ``tokenizers``), trained on a training split and cached on disk.

Both kinds share one pre-tokenizer and decoder so that decoding gives the text back exactly (for
whitespace-normalised text, i.e. single spaces, no leading/trailing space):

* ``Metaspace`` marks each word start with ``▁`` (no split), then a ``Split`` cuts every
  punctuation mark off as its own piece, keeping the ``▁`` of a preceding space:
  ``"Hello, world!"`` -> ``▁Hello`` ``,`` ``▁world`` ``!`` and ``"the cat ."`` -> ``▁the`` ``▁cat`` ``▁.``
* the ``Metaspace`` decoder turns ``▁`` back into spaces, so ``"Hello, world!"`` comes back as is
  (a plain whitespace split would give ``"Hello , world !"``).

Special tokens have fixed ids: ``<pad>``=0, ``<unk>``=1, ``<bos>``=2, ``<eos>``=3.

A trained tokenizer is stored as ``<cache_dir>/tokenizers/<kind>-<hash>.json`` where the hash
covers the training text and every setting, so a second build with the same data is a file read,
and any change to the data or settings trains a new one. Writes are atomic (temp file + rename),
so DDP ranks building the same tokenizer at once do not read a half-written file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, Literal

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from attnlab.data.content_cache import write_atomic

log = logging.getLogger(__name__)

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, BOS, EOS)
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

TokenizerKind = Literal["word", "bpe"]
TOKENIZER_KINDS: tuple[str, ...] = ("word", "bpe")

_META = "\u2581"  # "▁", SentencePiece's word-start marker
# A punctuation mark (with the ▁ of a preceding space), or a run of anything else up to the next
# word start or punctuation mark. \p{P} is Unicode punctuation, so « » ¿ … are split off too.
_PIECE_PATTERN = r"▁?\p{P}|▁?[^▁\p{P}]+"
# Distinct words whose ids encode_batch remembers (about 150 MB at the most).
_WORD_CACHE_SIZE = 1_000_000
# Bump when the tokenizer pipeline changes, so old cache entries are not reused.
_CACHE_FORMAT = 1


def pipeline_settings() -> dict[str, Any]:
    """What, besides the training text and the trainer settings, decides a tokenizer's ids (for cache keys)."""
    return {"format": _CACHE_FORMAT, "pattern": _PIECE_PATTERN, "special_tokens": list(SPECIAL_TOKENS)}


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=_META, prepend_scheme="always", split=False),
            pre_tokenizers.Split(Regex(_PIECE_PATTERN), behavior="isolated"),
        ]
    )


def _new_tokenizer(kind: str, vocab_size: int, min_frequency: int) -> tuple[Tokenizer, trainers.Trainer]:
    if kind == "word":
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer: trainers.Trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
    elif kind == "bpe":
        tok = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {TOKENIZER_KINDS}")
    tok.pre_tokenizer = _pre_tokenizer()
    tok.decoder = decoders.Metaspace(replacement=_META, prepend_scheme="always", split=False)
    return tok, trainer


def content_hash(texts: Iterable[str], settings: dict[str, Any]) -> str:
    """SHA-256 over the settings (as sorted JSON) and every text, each terminated by a newline."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    h.update(b"\0")
    for text in texts:
        h.update(text.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


class TextTokenizer:
    """A trained HF tokenizer with this project's conventions (fixed special ids, exact decoding).

    ``encode`` never adds special tokens: the collate function adds ``<bos>``/``<eos>`` where the
    model needs them.
    """

    PAD_ID = PAD_ID
    UNK_ID = UNK_ID
    BOS_ID = BOS_ID
    EOS_ID = EOS_ID

    def __init__(self, tokenizer: Tokenizer, kind: str | None = None) -> None:
        for token, expected in zip(SPECIAL_TOKENS, (PAD_ID, UNK_ID, BOS_ID, EOS_ID), strict=True):
            got = tokenizer.token_to_id(token)
            if got != expected:
                raise ValueError(f"tokenizer has {token} at id {got}, expected {expected}")
        self._tok = tokenizer
        self.kind = kind or json.loads(tokenizer.to_str()).get("model", {}).get("type", "?").lower()
        self.cache_path: Path | None = None
        self.from_cache = False
        self._word_cache: dict[str, list[int]] = {}

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        kind: str = "word",
        vocab_size: int = 8000,
        min_frequency: int = 1,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> TextTokenizer:
        """Train on ``texts`` (the training split only), or load the cached result of the same call.

        ``vocab_size`` caps the vocabulary (specials included); for ``word`` it is only a cap,
        for ``bpe`` it is the merge target. ``min_frequency``: rarer words (``word``) or pairs
        (``bpe``) are left out. ``cache_dir``: the project cache root (files go to
        ``<cache_dir>/tokenizers/``); ``None`` disables caching.
        """
        if kind not in TOKENIZER_KINDS:
            raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {TOKENIZER_KINDS}")
        if vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
        settings = {
            "format": _CACHE_FORMAT,
            "kind": kind,
            "vocab_size": int(vocab_size),
            "min_frequency": int(min_frequency),
            "pattern": _PIECE_PATTERN,
        }
        path: Path | None = None
        if cache_dir is not None:
            digest = content_hash(texts, settings)[:24]
            path = Path(cache_dir).expanduser() / "tokenizers" / f"{kind}-{digest}.json"
            if path.is_file():
                try:
                    out = cls.from_json(path.read_text(encoding="utf-8"))
                except Exception as err:  # noqa: BLE001 - a damaged cache entry is retrained, never fatal
                    log.warning("ignoring unreadable tokenizer cache %s (%s); retraining", path, err)
                else:
                    out.kind, out.cache_path, out.from_cache = kind, path, True
                    log.info("loaded %s tokenizer (vocab %d) from cache %s", kind, out.vocab_size, path)
                    return out
        out = cls.train_from_iterator(texts, kind, vocab_size, min_frequency, length=len(texts))
        if path is not None:
            write_atomic(path, out.to_json())
            out.cache_path = path
            log.info("trained %s tokenizer (vocab %d), cached at %s", kind, out.vocab_size, path)
        return out

    @classmethod
    def train_from_iterator(
        cls,
        texts: Iterable[str] | Iterable[list[str]],
        kind: str = "word",
        vocab_size: int = 8000,
        min_frequency: int = 1,
        length: int | None = None,
    ) -> TextTokenizer:
        """Train on ``texts`` (strings, or lists of strings: batches) as they are iterated, without
        holding them (no cache: the corpus store caches the result with the whole corpus)."""
        if kind not in TOKENIZER_KINDS:
            raise ValueError(f"unknown tokenizer kind {kind!r}; expected one of {TOKENIZER_KINDS}")
        if vocab_size <= len(SPECIAL_TOKENS):
            raise ValueError(f"vocab_size must exceed the {len(SPECIAL_TOKENS)} special tokens, got {vocab_size}")
        tok, trainer = _new_tokenizer(kind, int(vocab_size), int(min_frequency))
        tok.train_from_iterator(texts, trainer=trainer, length=length)
        return cls(tok, kind)

    @classmethod
    def from_json(cls, s: str) -> TextTokenizer:
        """Rebuild from :meth:`to_json` (e.g. from a checkpoint's hyper-parameters)."""
        return cls(Tokenizer.from_str(s))

    def to_json(self) -> str:
        """The whole tokenizer (vocab, merges, pre-tokenizer, decoder) as a JSON string."""
        return self._tok.to_str()

    # -- use --------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of ids, specials included (the embedding size a model needs)."""
        return self._tok.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, without any special token. Unknown pieces map to ``UNK_ID``."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """:meth:`encode` for many texts at once, the same ids as the tokenizer gives one by one.

        Each distinct whitespace word is encoded once and remembered (see :meth:`encode_flat`);
        texts with leading, trailing or double spaces go through the tokenizer whole.
        """
        texts = list(texts)
        rows = [text.split(" ") for text in texts]
        cache = self._remember(rows)
        out: list[list[int] | None] = [
            None if "" in words else list(chain.from_iterable(map(cache.__getitem__, words))) for words in rows
        ]
        rest = [k for k, ids in enumerate(out) if ids is None]
        for k, ids in zip(rest, self._encode_whole([texts[k] for k in rest]), strict=True):
            out[k] = ids
        return out  # type: ignore[return-value]

    def encode_flat(self, texts: Sequence[str], dtype: Any = "int64") -> tuple[Any, Any]:
        """Ids of ``texts`` back to back (a numpy array of ``dtype``) and each text's id count.

        The same ids as :meth:`encode` text by text: the pre-tokenizer never joins two whitespace
        words into one piece, and the ``Metaspace`` start marker makes a word at the start of a
        text the same piece as after a space, so a single-spaced text's ids are its words' ids in
        order. Each distinct word is encoded once and remembered, and the rest is look-ups in C
        iterators: 10-30x faster than encoding every sentence in the Rust core, whose BPE cache is
        small and whose pre-tokenizer regex is slow.
        """
        import numpy as np

        texts = list(texts)
        rows = [text.split(" ") for text in texts]
        if any("" in words for words in rows):  # unusual spacing: the general path
            lists = self.encode_batch(texts)
            lengths = np.fromiter(map(len, lists), np.int64, len(lists))
            return np.fromiter(chain.from_iterable(lists), dtype, int(lengths.sum())), lengths
        cache = self._remember(rows)
        pieces = list(map(cache.__getitem__, chain.from_iterable(rows)))
        word_lengths = np.fromiter(map(len, pieces), np.int64, len(pieces))
        ids = np.fromiter(chain.from_iterable(pieces), dtype, int(word_lengths.sum()))
        if not rows:
            return ids, np.zeros(0, np.int64)
        starts = np.zeros(len(rows), np.int64)
        np.cumsum(np.fromiter(map(len, rows), np.int64, len(rows))[:-1], out=starts[1:])
        return ids, np.add.reduceat(word_lengths, starts)

    def _remember(self, rows: Sequence[Sequence[str]]) -> dict[str, list[int]]:
        """The word cache, with every word of ``rows`` in it (new ones encoded in one batch)."""
        cache = self._word_cache
        unknown = list({w for words in rows for w in words if w not in cache} - {""})
        if unknown:
            if len(cache) + len(unknown) > _WORD_CACHE_SIZE:
                cache.clear()  # bounded memory; frequent words come straight back
            cache.update(zip(unknown, self._encode_whole(unknown), strict=True))
        return cache

    def _encode_whole(self, texts: list[str]) -> list[list[int]]:
        if not texts:
            return []
        # encode_batch_fast skips the character offsets we never use.
        encode = getattr(self._tok, "encode_batch_fast", self._tok.encode_batch)
        return [enc.ids for enc in encode(texts, add_special_tokens=False)]

    def decode(self, ids: Sequence[int] | Any) -> str:
        """Text of ``ids`` (a list or a 1-D tensor): stops at the first ``<eos>``, drops the other
        special tokens (``<pad>``, ``<bos>``, ``<unk>``) and joins pieces back into words."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        kept: list[int] = []
        for i in ids:
            i = int(i)
            if i == EOS_ID:
                break
            if i >= len(SPECIAL_TOKENS):
                kept.append(i)
        return self._tok.decode(kept, skip_special_tokens=True)

    def decode_plain(self, rows: list[list[int]]) -> list[str]:
        """Text of id lists that hold no ``<pad>``/``<bos>``/``<eos>`` (e.g. a corpus' stored ids), in
        one call to the Rust core: what :meth:`decode` gives row by row (``<unk>`` left out)."""
        return self._tok.decode_batch(rows, skip_special_tokens=True)

    def decode_batch(self, batch: Iterable[Sequence[int]] | Any) -> list[str]:
        """:meth:`decode` for each row of a list of id lists or a 2-D tensor ``(B, T)``."""
        if hasattr(batch, "tolist"):
            batch = batch.tolist()
        return [self.decode(row) for row in batch]

    def tokens(self, text: str) -> list[str]:
        """The pieces of ``text`` as strings (for attention heat-map axis labels)."""
        return self._tok.encode(text, add_special_tokens=False).tokens

    def id_to_token(self, i: int) -> str:
        """The piece for one id (``<unk>`` for ids outside the vocabulary)."""
        return self._tok.id_to_token(int(i)) or UNK

    def __getstate__(self) -> dict[str, Any]:
        # Pickled as JSON, so the object survives ddp_spawn / DataLoader workers on any platform.
        return {"json": self.to_json(), "kind": self.kind, "cache_path": self.cache_path, "from_cache": self.from_cache}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._tok = Tokenizer.from_str(state["json"])
        self._word_cache = {}
        self.kind = state["kind"]
        self.cache_path = state["cache_path"]
        self.from_cache = state["from_cache"]

    def __repr__(self) -> str:
        return f"TextTokenizer(kind={self.kind!r}, vocab_size={self.vocab_size})"
