"""Derived data built once per content: numpy arrays + a JSON meta, cached under ``paths.cache_dir``.

* **Keyed by content.** :func:`file_digest` hashes a file's bytes (SHA-256). A memo keyed by the
  file's ``(path, size, mtime_ns, ctime_ns, inode, device)`` skips re-hashing an unchanged file,
  so a warm start costs one ``stat``; any write changes ``ctime``, so a changed file is always
  re-hashed. A memo written within :data:`_RACY_SECONDS` of the file's mtime is not trusted (a
  write in the same clock tick could keep size and mtime), as git does with its index.
* **Built once.** :meth:`ArrayStore.load_or_build` takes a file lock per key: one process (run,
  sweep job or DDP rank) builds, the others wait and then map the result.
* **Atomic.** A build is written to a temporary folder and renamed into place; a build killed
  halfway leaves only a ``.tmp-*`` folder that no reader takes for an entry (and the next build
  of that key removes).
* **Shared.** Arrays are opened with ``np.load(mmap_mode="r")``: every process maps the same
  page-cache pages, DataLoader workers read them without copy-on-write growth, and a
  :class:`StoredArrays` pickles as its folder (a DDP-spawned rank re-maps it instead of receiving
  a copy).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.data.errors import DataError

__all__ = ["ArrayStore", "StoredArrays", "file_digest", "settings_key"]

CACHE_KEY = "paths.cache_dir"
_RACY_SECONDS = 2.0
_META = "meta.json"


def settings_key(*parts: Any) -> str:
    """A stable hex key of JSON-able parts (file digests, settings, format versions)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _not_writable(folder: Path, exc: OSError) -> DataError:
    why = "the disk is full" if exc.errno == errno.ENOSPC else str(exc)
    return DataError(
        f"cannot write the data cache in {folder}: {why}. Free some space or set {CACHE_KEY} "
        f"to a writable folder (e.g. {CACHE_KEY}=/tmp/attnlab-cache)"
    )


def file_digest(path: str | os.PathLike[str], memo_dir: Path | None) -> str:
    """SHA-256 of the file's bytes, memoised in ``memo_dir`` by its stat signature (see module doc)."""
    path = Path(path)
    st = os.stat(path)
    signature = [os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]
    memo = memo_dir / f"{settings_key(signature)}.json" if memo_dir is not None else None
    if memo is not None and memo.is_file():
        try:
            record = json.loads(memo.read_text())
            if record["signature"] == signature and record["written_ns"] - st.st_mtime_ns > _RACY_SECONDS * 1e9:
                return str(record["sha256"])
        except (OSError, ValueError, KeyError):
            pass  # unreadable memo: hash again
    sha = hashlib.sha256()
    with open(path, "rb") as f:  # (hashlib.file_digest is Python >= 3.11)
        while chunk := f.read(1 << 23):
            sha.update(chunk)
    digest = sha.hexdigest()
    if memo is not None:
        try:
            memo_dir.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_name(f"{memo.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"signature": signature, "sha256": digest, "written_ns": time.time_ns()}))
            os.replace(tmp, memo)
        except OSError:
            pass  # a memo is an optimisation; the store itself reports an unwritable cache
    return digest


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
    (folder / _META).write_text(json.dumps({"arrays": sorted(arrays), "meta": meta}))


class ArrayStore:
    """Entries of derived arrays under ``root`` (None: build in memory every time, nothing cached)."""

    def __init__(self, root: str | os.PathLike[str] | None) -> None:
        self.root = Path(root) if root is not None else None

    @property
    def memo_dir(self) -> Path | None:
        return self.root / "digests" if self.root is not None else None

    def digest(self, path: str | os.PathLike[str]) -> str:
        return file_digest(path, self.memo_dir)

    def load_or_build(
        self, key: str, build: Callable[[], tuple[Mapping[str, np.ndarray], Mapping[str, Any]]]
    ) -> StoredArrays:
        """The entry ``key``: mapped when present, else built by ``build()`` (once across processes)."""
        if self.root is None:
            return StoredArrays(*build())
        folder = self.root / key
        if (folder / _META).is_file():
            return StoredArrays.open(folder)
        from filelock import FileLock

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.root / f"{key}.lock"))
            lock.acquire()
        except OSError as exc:
            raise _not_writable(self.root, exc) from exc
        try:
            if (folder / _META).is_file():  # built by another process while this one waited
                return StoredArrays.open(folder)
            arrays, meta = build()
            for stale in self.root.glob(f".{key}.tmp-*"):  # left by a build that was killed
                shutil.rmtree(stale, ignore_errors=True)
            tmp: Path | None = None
            try:
                tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=self.root))
                _save(tmp, arrays, meta)
                os.rename(tmp, folder)
            except OSError as exc:
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
                raise _not_writable(self.root, exc) from exc
            return StoredArrays.open(folder)
        finally:
            lock.release()
