"""Data for attnlab's two tasks.

Translation: :mod:`attnlab.data.translation` (the two DataModules; their shared part in
:mod:`attnlab.data.translation_base`), :mod:`attnlab.data.translation_dataset` (dataset, collate),
:mod:`attnlab.data.samplers` (length bucketing), the built-once memory-mapped token store
(:mod:`attnlab.data.token_store` its layout, :mod:`attnlab.data.corpus_build` building it,
:mod:`attnlab.data.corpus_cache` keying, locking and sharing it, :mod:`attnlab.data.file_digest`
stat-memoised file digests), :mod:`attnlab.data.synthetic_translation` (the generated default
corpus), :mod:`attnlab.data.tokenizer` (HF ``tokenizers`` wrapper), :mod:`attnlab.data.parallel_files`
(streaming parallel text / TSV). Detection: :mod:`attnlab.data.coco` and its generated shapes set.

Importing this package is cheap: the names below are loaded from their modules on first use,
so ``import attnlab.data`` does not pull in torch or Lightning (Hydra's ``_target_`` paths name
the modules directly anyway).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TranslationDataModule": "attnlab.data.translation",
    "TranslationFilesDataModule": "attnlab.data.translation",
    "TranslationDataset": "attnlab.data.translation",
    "TranslationCollator": "attnlab.data.translation",
    "BucketBatchSampler": "attnlab.data.translation",
    "padding_waste": "attnlab.data.translation",
    "TextTokenizer": "attnlab.data.tokenizer",
    "DataError": "attnlab.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'attnlab.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
