"""Data for attnlab's two tasks, one concept per module.

Shared:
    :mod:`~attnlab.data.content_cache`   content-keyed caches: file digests, build once under a lock,
                                         atomic, counted, clear errors (the three caches below)
    :mod:`~attnlab.data.array_store`     numpy arrays + meta as cache entries (the COCO index's format)
    :mod:`~attnlab.data.loader_workers`  the ``num_workers`` default

Translation:
    :mod:`~attnlab.data.translation`     the two DataModules (generated corpus, files on disk)
    :mod:`~attnlab.data.translation_base`  what both share: the store, datasets, bucketed loaders
    :mod:`~attnlab.data.translation_dataset`  dataset and collate
    :mod:`~attnlab.data.samplers`        length bucketing, padding waste
    :mod:`~attnlab.data.token_store`     the memory-mapped token store (layout, ``<cache_dir>/corpora``)
    :mod:`~attnlab.data.corpus_build`    building a store from streams of pairs
    :mod:`~attnlab.data.tokenizer`       HF ``tokenizers`` wrapper
    :mod:`~attnlab.data.parallel_files`  streaming parallel text / TSV
    :mod:`~attnlab.data.synthetic_translation`, :mod:`~attnlab.data.veslan_lexicon`  the generated corpus

Detection:
    :mod:`~attnlab.data.coco`            the DataModule and result conversion
    :mod:`~attnlab.data.coco_dataset`    the per-item dataset
    :mod:`~attnlab.data.coco_split`      a cleaned split from its cached index; the ground truth
    :mod:`~attnlab.data.coco_index`      cleaning rules (ids, label space, boxes)
    :mod:`~attnlab.data.coco_parse`, :mod:`~attnlab.data.coco_validate`  reading annotation files
    :mod:`~attnlab.data.coco_files`      checks of the image files
    :mod:`~attnlab.data.detection_transforms`  transforms and collate
    :mod:`~attnlab.data.synthetic_shapes`  the generated shapes set; :mod:`~attnlab.data.shapes_sets`
                                         one per settings under the default root

Errors are :class:`attnlab.errors.DataError`. Importing this package is cheap: the names below are
loaded from their modules on first use, so ``import attnlab.data`` does not pull in torch or
Lightning (Hydra's ``_target_`` paths name the modules directly anyway).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "TranslationDataModule": "attnlab.data.translation",
    "TranslationFilesDataModule": "attnlab.data.translation",
    "TranslationDataset": "attnlab.data.translation_dataset",
    "TranslationCollator": "attnlab.data.translation_dataset",
    "BucketBatchSampler": "attnlab.data.samplers",
    "padding_waste": "attnlab.data.translation_base",
    "TextTokenizer": "attnlab.data.tokenizer",
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
