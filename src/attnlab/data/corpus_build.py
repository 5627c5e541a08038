"""Building a token store (:mod:`attnlab.data.token_store`) from streams of sentence pairs.

Memory stays flat however large the corpus is; the passes are:

1. **Stage**: every split's normalised pairs are streamed to ``<split>/{src,tgt}.txt`` (one
   sentence a line) with their byte offsets and source word counts. Bad input (bad UTF-8, files of
   different lengths, short TSV rows) surfaces here as the readers' ``DataError``.
2. **Tokenizers**: each side's tokenizer is trained through an iterator over an evenly spaced
   sample of at most ``tokenizer_sample`` training sentences, read back from the staged text.
3. **Encode**: the staged text is read in chunks and encoded in batches (HF ``tokenizers`` batch
   encoding, in parallel); ids are appended to ``<split>/{src,tgt}.ids``. Training pairs longer
   than ``max_len`` tokens on either side are dropped here.

The staged training text is deleted at the end; val/test text stays (BLEU's references).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.data.token_store import MANIFEST, SIDES, STORE_FORMAT, id_dtype
from attnlab.data.tokenizer import TextTokenizer
from attnlab.errors import DataError

__all__ = ["BuildSpec", "build_store"]

log = logging.getLogger(__name__)

Pair = tuple[str, str]
#: Sentences encoded per batch: big enough for the Rust thread pool, small enough to stay flat.
ENCODE_CHUNK = 8192


@dataclass(frozen=True)
class BuildSpec:
    """Every setting that changes the ids (all of it is part of the store's cache key)."""

    tokenizer: str
    src_vocab_size: int
    tgt_vocab_size: int
    min_frequency: int
    tokenizer_sample: int
    train_max_len: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Staged:
    n: int
    dropped_empty: int


def _stage(folder: Path, pairs: Iterable[Pair], keep_offsets: bool) -> _Staged:
    """Write the pairs' text (and, for text that is kept, its byte offsets) and the source word
    counts; drop pairs with an empty side. Counts go to compact arrays, never to Python lists."""
    folder.mkdir(parents=True, exist_ok=True)
    offsets = {side: array("q", [0]) for side in SIDES}
    words = array("i")
    dropped = 0
    with (folder / "src.txt").open("wb") as fs, (folder / "tgt.txt").open("wb") as ft:
        for src, tgt in pairs:
            if not src or not tgt:
                dropped += 1
                continue
            raw_src, raw_tgt = src.encode("utf-8") + b"\n", tgt.encode("utf-8") + b"\n"
            fs.write(raw_src)
            ft.write(raw_tgt)
            if keep_offsets:
                offsets["src"].append(offsets["src"][-1] + len(raw_src))
                offsets["tgt"].append(offsets["tgt"][-1] + len(raw_tgt))
            words.append(len(src.split()))
    if keep_offsets:
        for side in SIDES:
            np.save(folder / f"{side}.txt.off.npy", np.frombuffer(offsets[side], dtype=np.int64))
    np.save(folder / "src_words.npy", np.frombuffer(words, dtype=np.int32))
    return _Staged(len(words), dropped)


def _text_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8", newline="\n") as f:
        for line in f:
            yield line[:-1]


def _sample(path: Path, n: int, k: int, batch: int = 2048) -> Iterator[list[str]]:
    """Batches of ``min(n, k)`` lines of ``path`` spread evenly over its ``n`` lines."""
    lines: Iterable[str] = _text_lines(path)
    if k < n:
        lines = (line for i, line in enumerate(lines) if (i * k) // n != ((i + 1) * k) // n)
    it = iter(lines)
    while chunk := list(itertools.islice(it, batch)):
        yield chunk


def _train_tokenizers(train_dir: Path, n: int, spec: BuildSpec) -> dict[str, TextTokenizer]:
    """Both sides at once, in two threads: the Rust trainers release the GIL for most of their
    work, so the two overlap (measured here: 12.5 s one after the other, 9.9 s together)."""
    k = min(n, spec.tokenizer_sample)

    def train(side: str) -> TextTokenizer:
        vocab = spec.src_vocab_size if side == "src" else spec.tgt_vocab_size
        return TextTokenizer.train_from_iterator(
            _sample(train_dir / f"{side}.txt", n, k), spec.tokenizer, vocab, spec.min_frequency, length=k
        )

    with ThreadPoolExecutor(max_workers=len(SIDES)) as pool:
        return dict(zip(SIDES, pool.map(train, SIDES), strict=True))


def _encode_split(folder: Path, tokenizers: Mapping[str, TextTokenizer], max_len: int | None) -> dict[str, Any]:
    """Encode the staged text of one split into ``{src,tgt}.ids`` + offsets; filter by ``max_len``."""
    dtypes = {side: id_dtype(tokenizers[side].vocab_size) for side in SIDES}
    lengths: dict[str, list[np.ndarray]] = {side: [] for side in SIDES}
    keep_all: list[np.ndarray] = []
    readers = {side: _text_lines(folder / f"{side}.txt") for side in SIDES}
    with (folder / "src.ids").open("wb") as fs, (folder / "tgt.ids").open("wb") as ft:
        files = {"src": fs, "tgt": ft}
        while True:
            chunk = {side: list(itertools.islice(readers[side], ENCODE_CHUNK)) for side in SIDES}
            if not chunk["src"]:
                break
            encoded = {side: tokenizers[side].encode_flat(chunk[side], dtypes[side]) for side in SIDES}
            lens = {side: encoded[side][1] for side in SIDES}
            keep = np.ones(len(lens["src"]), dtype=bool)
            if max_len is not None:
                keep = (lens["src"] <= max_len) & (lens["tgt"] <= max_len)
            keep_all.append(keep)
            for side in SIDES:
                flat = encoded[side][0]
                if not keep.all():
                    flat = flat[np.repeat(keep, lens[side])]
                files[side].write(flat.tobytes())
                lengths[side].append(lens[side][keep])
    keep = np.concatenate(keep_all) if keep_all else np.ones(0, dtype=bool)
    info: dict[str, Any] = {"n": int(keep.sum()), "dropped_long": int((~keep).sum())}
    for side in SIDES:
        side_lens = np.concatenate(lengths[side]) if lengths[side] else np.zeros(0, np.int64)
        offsets = np.zeros(len(side_lens) + 1, dtype=np.int64)
        np.cumsum(side_lens, out=offsets[1:])
        np.save(folder / f"{side}.off.npy", offsets)
        info[f"{side}_dtype"] = dtypes[side].name
        info[f"{side}_tokens"] = int(offsets[-1])
    if info["dropped_long"]:
        words = np.load(folder / "src_words.npy")
        np.save(folder / "src_words.npy", words[keep])
    return info


def build_store(
    out: Path,
    splits: Mapping[str, Callable[[], Iterable[Pair]]],
    spec: BuildSpec,
    describe: Callable[[str], str],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """Build a complete store in the (empty, temporary) folder ``out``; return its manifest.

    ``splits`` maps ``train``/``val``/``test`` to a function returning that split's normalised
    pairs; ``describe(split)`` names the split's source for errors (files and config keys).
    ``settings`` (the cache key's content) is recorded in the manifest.
    """
    started = time.perf_counter()
    staged: dict[str, _Staged] = {}
    for name, pairs in splits.items():
        staged[name] = _stage(out / name, pairs(), keep_offsets=name != "train")
        if staged[name].dropped_empty:
            log.warning("%s split: dropped %d pair(s) with an empty side", name, staged[name].dropped_empty)
        if staged[name].n == 0:
            raise DataError(f"the {name} split is empty: {describe(name)} holds no sentence pair")
    t_stage = time.perf_counter()
    tokenizers = _train_tokenizers(out / "train", staged["train"].n, spec)
    t_tok = time.perf_counter()
    manifest: dict[str, Any] = {"format": STORE_FORMAT, "settings": dict(settings), "splits": {}}
    for name in splits:
        info = _encode_split(out / name, tokenizers, spec.train_max_len if name == "train" else None)
        if info["n"] == 0:
            raise DataError(f"the {name} split is empty after filtering: {describe(name)}")
        keep_text = name != "train"
        if not keep_text:
            for side in SIDES:
                (out / name / f"{side}.txt").unlink()
        info["text"] = keep_text
        info["dropped_empty"] = staged[name].dropped_empty
        for side in SIDES:
            info[f"{side}_text_bytes"] = (out / name / f"{side}.txt").stat().st_size if keep_text else 0
        manifest["splits"][name] = info
    for side in SIDES:
        (out / f"{side}_tokenizer.json").write_text(tokenizers[side].to_json(), encoding="utf-8")
    t_end = time.perf_counter()
    manifest["build_seconds"] = {"stage": t_stage - started, "tokenizers": t_tok - t_stage,
                                 "encode": t_end - t_tok, "total": t_end - started}
    manifest["files"] = {
        str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True), encoding="utf-8")
    return manifest
