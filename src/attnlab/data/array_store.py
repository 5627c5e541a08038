"""Derived data stored as numpy arrays + a JSON meta, one folder per entry of a content-keyed cache.

:class:`ArrayStore` keeps its entries in a :class:`~attnlab.data.content_cache.ContentCache`
(keyed by content, built once under a file lock, written atomically, counted; see there). Arrays
are opened with ``np.load(mmap_mode="r")``: every process maps the same page-cache pages,
DataLoader workers read them without copy-on-write growth, and a :class:`StoredArrays` pickles as
its folder (a DDP-spawned rank re-maps it instead of receiving a copy).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.data.content_cache import ContentCache, file_digest

__all__ = ["ArrayStore", "StoredArrays"]

_META = "meta.json"

Built = tuple[Mapping[str, np.ndarray], Mapping[str, Any]]


class StoredArrays:
    """Arrays (read-only memory maps when stored on disk) and the meta of one store entry."""

    def __init__(self, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any], folder: Path | None = None) -> None:
        self.arrays = dict(arrays)
        self.meta = dict(meta)
        self.folder = folder

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    @classmethod
    def open(cls, folder: Path) -> StoredArrays:
        meta = json.loads((folder / _META).read_text())
        # Plain ndarray views of the maps: the memmap subclass adds work to every slice a
        # DataLoader takes per item, and nothing here needs its file methods.
        arrays = {name: np.asarray(np.load(folder / f"{name}.npy", mmap_mode="r", allow_pickle=False))
                  for name in meta["arrays"]}
        return cls(arrays, meta["meta"], folder)

    def __reduce__(self) -> tuple[Any, ...]:
        if self.folder is not None:  # another process maps the same files instead of copying them
            return (StoredArrays.open, (self.folder,))
        return (StoredArrays, (self.arrays, self.meta, None))


def _save(folder: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(array), allow_pickle=False)
    (folder / _META).write_text(json.dumps({"arrays": sorted(arrays), "meta": meta}))  # written last


def _is_complete(folder: Path) -> bool:
    return (folder / _META).is_file()


class ArrayStore:
    """Entries of derived arrays under ``root`` (None: build in memory every time, nothing cached).

    ``kind`` names the entries in log lines and errors, ``setting`` the config key that chose ``root``.
    """

    def __init__(
        self, root: str | os.PathLike[str] | None, kind: str = "data cache", setting: str = "paths.cache_dir"
    ) -> None:
        self.cache = ContentCache(root, kind, setting) if root is not None else None

    def digest(self, path: str | os.PathLike[str]) -> str:
        """The file's content digest (remembered in the store's folder, when there is one)."""
        return self.cache.digest(path) if self.cache is not None else file_digest(path, None)

    def load_or_build(self, key: str, build: Callable[[], Built], what: str | None = None) -> StoredArrays:
        """The entry ``key``: mapped when present, else built by ``build()`` (once across processes)."""
        if self.cache is None:
            return StoredArrays(*build())
        folder, _ = self.cache.get_or_build(key, lambda tmp: _save(tmp, *build()), _is_complete, what or key)
        return StoredArrays.open(folder)
