"""The on-disk token store of a translation corpus: flat id arrays read through memory maps.

One folder per corpus content and settings, ``<cache_dir>/corpora/<key>/`` (:func:`corpus_cache`;
built by :mod:`attnlab.data.corpus_build`, once, under the guarantees of
:mod:`attnlab.data.content_cache`)::

    manifest.json                 format, counts, dtypes, build statistics (written last)
    src_tokenizer.json            the two trained tokenizers (HF ``tokenizers`` JSON)
    tgt_tokenizer.json
    <split>/src.ids  tgt.ids      every sentence's token ids back to back (uint16 when the
                                  vocabulary fits, else uint32), no special tokens
    <split>/src.off.npy tgt.off.npy   int64 offsets, n + 1: sentence i is ids[off[i]:off[i+1]]
    <split>/src_words.npy         int32 whitespace words per source sentence (BLEU by length)
    <split>/src.txt tgt.txt       val/test only: the normalised text, one sentence a line (the
    <split>/src.txt.off.npy ...   references BLEU scores against); the training text is not kept

Opening a store maps the files (``np.memmap``); nothing is read until it is used, so opening is
instant and every process mapping the same store shares one copy in the page cache. Stores
pickle by path (DDP spawn, DataLoader workers) and re-map in the receiving process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.data.content_cache import ContentCache, private_folder

__all__ = [
    "STORE_FORMAT",
    "SIDES",
    "StoreSplit",
    "TextColumn",
    "TokenStore",
    "corpus_cache",
    "id_dtype",
    "store_is_complete",
]

#: Bump when the layout or the meaning of the files changes (it is part of the cache key too).
STORE_FORMAT = 1
SIDES = ("src", "tgt")
MANIFEST = "manifest.json"


def corpus_cache(cache_dir: str | os.PathLike[str] | None) -> ContentCache:
    """The stores under ``<cache_dir>/corpora``; without a cache dir, a folder of this process
    removed at exit."""
    root = Path(cache_dir).expanduser() / "corpora" if cache_dir is not None else private_folder("attnlab-corpora-")
    return ContentCache(root, "corpus store", "paths.cache_dir (data.cache_dir)")


def id_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (half the disk and page cache of uint32), else uint32."""
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)


def _map(path: Path, dtype: Any, count: int) -> np.ndarray:
    """A read-only memory map of ``count`` items (an empty array for 0: mmap refuses empty files).

    Returned as a plain ndarray view of the map: slicing an ``np.memmap`` costs several times more
    (its ``__getitem__`` and ``__array_finalize__`` run in Python), and batches slice thousands of times.
    """
    if count == 0:
        return np.empty(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,)).view(np.ndarray)


def _load(path: Path) -> np.ndarray:
    return np.load(path, mmap_mode="r").view(np.ndarray)


class TextColumn(Sequence[str]):
    """The lines of a UTF-8 text file, indexed through a byte-offset array (both memory-mapped)."""

    def __init__(self, blob: np.ndarray, offsets: np.ndarray) -> None:
        self.blob = blob
        self.offsets = offsets

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:  # type: ignore[override]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        start, end = int(self.offsets[i]), int(self.offsets[i + 1]) - 1  # drop the "\n"
        return bytes(self.blob[start:end]).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        for i in range(len(self)):
            yield self[i]


@dataclass
class StoreSplit:
    """One split's arrays. ``text[side]`` is None for the training split (its text is not kept)."""

    ids: dict[str, np.ndarray]
    offsets: dict[str, np.ndarray]
    src_words: np.ndarray
    text: dict[str, TextColumn | None]

    def __len__(self) -> int:
        return len(self.offsets["src"]) - 1

    def lengths(self, side: str) -> np.ndarray:
        """Token count of every sentence of ``side`` (int32, computed from the offsets)."""
        return np.diff(self.offsets[side]).astype(np.int32)

    def sentence(self, side: str, i: int) -> np.ndarray:
        """The ids of sentence ``i`` (a view into the map, no special tokens)."""
        off = self.offsets[side]
        return self.ids[side][int(off[i]) : int(off[i + 1])]


def store_is_complete(path: Path) -> bool:
    """Whether ``path`` holds a finished store of this format with every file at its recorded size.

    A build writes into a temporary folder and renames it only when complete, so a half-built
    store never has this name; the size check also catches files damaged or truncated later.
    """
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest.get("format") != STORE_FORMAT:
        return False
    for rel, size in manifest.get("files", {}).items():
        try:
            if (path / rel).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


class TokenStore:
    """A finished store, memory-mapped. Pickles by path; the maps are re-opened where it lands."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._open()

    def _open(self) -> None:
        self.manifest: dict[str, Any] = json.loads((self.path / MANIFEST).read_text())
        self.splits: dict[str, StoreSplit] = {}
        for name, info in self.manifest["splits"].items():
            folder = self.path / name
            ids, offsets, text = {}, {}, {}
            for side in SIDES:
                ids[side] = _map(folder / f"{side}.ids", info[f"{side}_dtype"], info[f"{side}_tokens"])
                offsets[side] = _load(folder / f"{side}.off.npy")
                text[side] = (
                    TextColumn(_map(folder / f"{side}.txt", np.uint8, info[f"{side}_text_bytes"]),
                               _load(folder / f"{side}.txt.off.npy"))
                    if info["text"] else None
                )
            self.splits[name] = StoreSplit(ids, offsets, _load(folder / "src_words.npy"), text)

    def tokenizer_json(self, side: str) -> str:
        return (self.path / f"{side}_tokenizer.json").read_text(encoding="utf-8")

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = Path(state["path"])
        self._open()

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.splits.items())
        return f"TokenStore({str(self.path)!r}: {sizes})"
