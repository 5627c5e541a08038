"""Sentence pairs of one split of a token store, and the collate function that pads them.

Items are dicts with ``src_ids``/``tgt_ids`` (int arrays, views into the memory map, no special
tokens), ``src_text``/``tgt_text``, ``src_num_words`` and ``index`` (the pair's position in its
split). Val/test text comes from the store (the
normalised sentences, BLEU's references); the training text is not stored, so training items
carry the text decoded from their ids (``<unk>`` pieces left out), batched in ``__getitems__``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from attnlab.data.token_store import StoreSplit, TokenStore
from attnlab.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, TextTokenizer

__all__ = ["TranslationCollator", "TranslationDataset"]


class _DecodedText(Sequence[str]):
    """The text of a split without stored text: its ids decoded on access."""

    def __init__(self, dataset: TranslationDataset, side: str) -> None:
        self.dataset, self.side = dataset, side

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        return self.dataset.decode(self.side, [self.dataset.ids(self.side, i)])[0]

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self[i]


class TranslationDataset(Dataset):
    """The pairs of split ``name`` of ``store``.

    ``max_len``: ids of longer sentences are cut to ``max_len`` tokens (both sides; for val/test,
    so one huge sentence cannot stall evaluation: the reference *text* stays whole for BLEU).
    ``tokenizers``: ``(src, tgt)``, needed to decode the text of a split whose text is not stored.
    Pickles by the store's path: the maps are re-opened in a spawned process, never copied.
    """

    def __init__(
        self,
        store: TokenStore,
        name: str,
        tokenizers: tuple[TextTokenizer, TextTokenizer] | None = None,
        max_len: int | None = None,
    ) -> None:
        self.store, self.name = store, name
        self.tokenizers = tokenizers
        self.max_len = None if max_len is None else int(max_len)
        self._derive()

    def _derive(self) -> None:
        split: StoreSplit = self.store.splits[self.name]
        self.split = split
        raw = {side: split.lengths(side) for side in ("src", "tgt")}
        cap = np.iinfo(np.int32).max if self.max_len is None else self.max_len
        self.n_truncated = int(((raw["src"] > cap) | (raw["tgt"] > cap)).sum())
        # Padded-tensor lengths: ids + one special token (<eos>, or <bos> on the decoder input).
        self.src_lengths = np.minimum(raw["src"], cap) + 1
        self.tgt_lengths = np.minimum(raw["tgt"], cap) + 1
        self.src_text: Sequence[str] = split.text["src"] or _DecodedText(self, "src")
        self.tgt_text: Sequence[str] = split.text["tgt"] or _DecodedText(self, "tgt")

    def __getstate__(self) -> dict[str, Any]:
        return {"store": self.store, "name": self.name, "tokenizers": self.tokenizers, "max_len": self.max_len}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._derive()

    def __len__(self) -> int:
        return len(self.split)

    def ids(self, side: str, i: int) -> np.ndarray:
        """Ids of sentence ``i`` of ``side`` (truncated to ``max_len``)."""
        ids = self.split.sentence(side, i)
        return ids if self.max_len is None else ids[: self.max_len]

    def sort_keys(self) -> np.ndarray:
        """Bucketing keys, one int64 per example: source length, then target length."""
        return (self.src_lengths.astype(np.int64) << 32) | self.tgt_lengths.astype(np.int64)

    def decode(self, side: str, rows: Sequence[np.ndarray]) -> list[str]:
        if self.tokenizers is None:
            raise RuntimeError(f"the {self.name} split stores no text and this dataset has no tokenizers")
        tok = self.tokenizers[0 if side == "src" else 1]
        return tok.decode_plain([row.tolist() for row in rows])

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.__getitems__([i])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A batch of items at once (the DataLoader calls this): offsets looked up together, text
        decoded in one call."""
        idx = np.asarray(indices, dtype=np.int64)
        rows, texts = {}, {}
        for side in ("src", "tgt"):
            ids, off = self.split.ids[side], self.split.offsets[side]
            starts, ends = off[idx], off[idx + 1]
            if self.max_len is not None:
                ends = np.minimum(ends, starts + self.max_len)
            rows[side] = [ids[a:b] for a, b in zip(starts.tolist(), ends.tolist())]
            column = self.split.text[side]
            texts[side] = [column[i] for i in idx.tolist()] if column is not None else self.decode(side, rows[side])
        words = self.split.src_words[idx].tolist()
        # "index": the pair's position in its split, so test outputs are written back in reference order.
        return [
            {"index": i, "src_ids": s, "tgt_ids": t, "src_text": st, "tgt_text": tt, "src_num_words": w}
            for i, s, t, st, tt, w in zip(
                idx.tolist(), rows["src"], rows["tgt"], texts["src"], texts["tgt"], words, strict=True
            )
        ]


class TranslationCollator:
    """Pads a list of items into the batch dict of :mod:`attnlab.data.translation`.

    A class rather than a closure so DataLoader workers (spawn) can pickle it.
    """

    def __init__(self, pad_id: int = PAD_ID, bos_id: int = BOS_ID, eos_id: int = EOS_ID) -> None:
        self.pad_id = pad_id
        self.bos_id = bos_id
        self.eos_id = eos_id

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        b = len(items)
        n_src = [len(it["src_ids"]) for it in items]
        n_tgt = [len(it["tgt_ids"]) for it in items]
        s, t = max(n_src) + 1, max(n_tgt) + 1
        src = np.full((b, s), self.pad_id, dtype=np.int64)
        tgt_in = np.full((b, t), self.pad_id, dtype=np.int64)
        tgt_out = np.full((b, t), self.pad_id, dtype=np.int64)
        for row, it in enumerate(items):
            ns, nt = n_src[row], n_tgt[row]
            src[row, :ns] = it["src_ids"]
            src[row, ns] = self.eos_id
            tgt_in[row, 0] = self.bos_id
            tgt_in[row, 1 : nt + 1] = it["tgt_ids"]
            tgt_out[row, :nt] = it["tgt_ids"]
            tgt_out[row, nt] = self.eos_id
        src_len = torch.tensor(n_src, dtype=torch.long) + 1
        src_text = [it["src_text"] for it in items]
        words = [it["src_num_words"] if "src_num_words" in it else len(x.split()) for it, x in zip(items, src_text)]
        return {
            "src": torch.from_numpy(src),
            "src_mask": torch.arange(s).unsqueeze(0) < src_len.unsqueeze(1),
            "src_lengths": src_len,
            "tgt_in": torch.from_numpy(tgt_in),
            "tgt_out": torch.from_numpy(tgt_out),
            "src_text": src_text,
            "tgt_text": [it["tgt_text"] for it in items],
            "src_num_words": torch.tensor(words, dtype=torch.long),
            **({"index": torch.tensor([it["index"] for it in items], dtype=torch.long)}
               if all("index" in it for it in items) else {}),
        }
