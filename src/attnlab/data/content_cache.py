"""Content-keyed caches: data derived from files or settings, built once per content and shared.

A :class:`ContentCache` is a folder of entries, one per key, the key a hash of everything the entry
is built from (file digests, every setting that changes it, a format version). Three live in it:
the translation token stores (``<cache_dir>/corpora``), the COCO indexes
(``<cache_dir>/coco_index``) and the generated shapes sets (``<data_dir>/shapes_coco``). Every
entry gets the same guarantees:

* **Keyed by content.** :func:`file_digest` hashes a file's bytes (SHA-256) and remembers the digest
  with the file's ``(size, mtime_ns, ctime_ns, inode, device)``; a warm start costs one ``stat``.
  Any write changes ``ctime`` (which, unlike ``mtime``, ``touch -d`` or ``rsync -t`` cannot set
  back), so a changed file is always hashed again. One race remains with any stat-based memo, a
  write in the same clock tick as the hashing: a memo is trusted only when the file had been left
  alone for :data:`SETTLE_SECONDS` before it was hashed (git's "racily clean" rule).
* **Built once.** The build runs under a file lock (``.<key>.lock``, released by the OS if the
  builder dies): when several processes (runs, sweep jobs, DDP ranks) need the same new entry at
  once, one builds it and the others wait, then use it.
* **Atomic.** A build writes into a temporary folder ``.tmp-<key>-*`` renamed into place only when
  complete, so a build killed halfway leaves nothing that passes for an entry; the next builder of
  that key removes the leftovers (under the lock, so never a folder someone is still writing). An
  entry the caller finds incomplete or damaged is moved aside and rebuilt.
* **Counted.** Every finished build appends one JSON line (who, when, how long) to
  ``<root>/builds.log`` (:func:`read_build_log`).
* **Clear errors.** A folder that cannot be written, or a full disk, is a :class:`DataError` naming
  the folder and the setting that chose it.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from attnlab.errors import DataError

__all__ = [
    "BUILD_LOG",
    "SETTLE_SECONDS",
    "ContentCache",
    "cache_key",
    "file_digest",
    "private_folder",
    "read_build_log",
    "temp_folder",
    "write_atomic",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: A digest memo is trusted only if the file's last change was at least this long before it was hashed.
SETTLE_SECONDS = 2.0
BUILD_LOG = "builds.log"
_MEMO_DIR = ".digests"
_CHUNK = 1 << 22
# No space, no quota, no permission, read-only, or a file size limit (ulimit -f).
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}
_private: dict[str, Path] = {}


def cache_key(value: Any) -> str:
    """A short, stable hash of a JSON-able ``value`` (dict keys sorted; other objects as ``str``)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:24]


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see all or nothing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------- digests


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:  # (hashlib.file_digest is Python >= 3.11)
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | os.PathLike[str], memo_dir: str | os.PathLike[str] | None) -> str:
    """SHA-256 of the bytes of ``path`` (as stored: a ``.gz`` file is hashed compressed).

    ``memo_dir``: where to remember digests by ``stat`` (``None``: always hash); see the module
    docstring for when a memo is trusted. A memo that cannot be read or written is ignored: it
    only ever saves time.
    """
    path = Path(path).resolve()
    st = path.stat()
    memo = None
    if memo_dir is not None:
        memo = Path(memo_dir) / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".json")
        try:
            entry = json.loads(memo.read_text())
            if entry["path"] == str(path) and entry["stat"] == _stat_key(st) and entry["settled"]:
                return str(entry["sha256"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    hashed_at = time.time_ns()
    digest = _hash_file(path)
    if memo is not None and _stat_key(path.stat()) == _stat_key(st):  # unchanged while it was hashed
        settled = (hashed_at - max(st.st_mtime_ns, st.st_ctime_ns)) / 1e9 >= SETTLE_SECONDS
        entry = {"path": str(path), "stat": _stat_key(st), "sha256": digest, "settled": settled}
        try:
            write_atomic(memo, json.dumps(entry))
        except OSError as err:  # a read-only cache still works, it just hashes every time
            log.debug("cannot write the digest memo %s: %s", memo, err)
    return digest


# ----------------------------------------------------------------------------------- folders


def private_folder(prefix: str) -> Path:
    """A folder of this process, removed at exit (one per ``prefix``): a cache with nowhere to live."""
    if prefix not in _private:
        _private[prefix] = Path(tempfile.mkdtemp(prefix=prefix))
        atexit.register(shutil.rmtree, _private[prefix], True)
    return _private[prefix]


@contextmanager
def temp_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A new folder in ``parent``, removed on the way out unless it was renamed away meanwhile."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield tmp
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def read_build_log(root: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The finished builds recorded in the cache folder ``root`` (oldest first), one dict per build."""
    try:
        text = (Path(root) / BUILD_LOG).read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# ----------------------------------------------------------------------------------- the cache


class ContentCache:
    """The entries under ``root``; see the module docstring.

    ``kind`` names the entries in log lines and errors ("corpus store"); ``setting`` is the config
    key that chose ``root``, named in the error when it cannot be written.
    """

    def __init__(self, root: str | os.PathLike[str], kind: str, setting: str = "paths.cache_dir") -> None:
        self.root = Path(root).expanduser()
        self.kind = kind
        self.setting = setting

    def digest(self, path: str | os.PathLike[str]) -> str:
        """:func:`file_digest` of ``path``, remembered in this cache's folder."""
        return file_digest(path, self.root / _MEMO_DIR)

    def error(self, err: OSError) -> DataError:
        return DataError(
            f"cannot write the {self.kind} under {self.root}: {err.strerror or err}; free space there or point "
            f"{self.setting} at a writable folder with room for it"
        )

    def get_or_build(
        self, key: str, build: Callable[[Path], T], is_complete: Callable[[Path], bool], what: str
    ) -> tuple[Path, T | None]:
        """The entry ``<root>/<key>``: as it is when ``is_complete``, else built by ``build(tmp_folder)``.

        Returns the entry's folder and what ``build`` returned (None when this call did not build).
        ``what`` names the entry in log lines. Errors from ``build`` (bad input) propagate after
        its temporary folder is removed.
        """
        final = self.root / key
        if is_complete(final):
            log.info("%s %s (cached)", self.kind, final)
            return final, None
        lock = self._lock(key, what)
        try:
            if is_complete(final):  # built by the process this one waited for
                log.info("%s %s (built by another process)", self.kind, final)
                return final, None
            return final, self._build(key, final, build, what)
        finally:
            lock.release()

    def _lock(self, key: str, what: str) -> Any:
        from filelock import FileLock, Timeout

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(self.root / f".{key}.lock"))
            try:
                lock.acquire(timeout=0.5)
            except Timeout:
                log.info("waiting for another process to finish building the %s for %s (lock %s)",
                         self.kind, what, lock.lock_file)
                lock.acquire()
        except OSError as err:
            raise self.error(err) from None
        return lock

    def _build(self, key: str, final: Path, build: Callable[[Path], T], what: str) -> T:
        """Build ``final`` (only called while holding ``key``'s lock)."""
        for old in self.root.glob(f".tmp-{key}-*"):  # builds of this key that died
            log.info("removing an unfinished build %s", old)
            shutil.rmtree(old, ignore_errors=True)
        if final.exists():  # incomplete or damaged (a file missing or of the wrong size): rebuild it
            log.warning("%s %s is incomplete or damaged; rebuilding it", self.kind, final)
            trash = self.root / f".tmp-{key}-damaged"
            os.rename(final, trash)
            shutil.rmtree(trash, ignore_errors=True)
        log.info("building the %s for %s in %s (once; later runs use it)", self.kind, what, final)
        started = time.perf_counter()
        try:
            with temp_folder(self.root, f".tmp-{key}-") as tmp:
                result = build(tmp)
                os.rename(tmp, final)
        except OSError as err:
            if err.errno in _DISK_ERRORS:
                raise self.error(err) from None
            raise
        seconds = time.perf_counter() - started
        record = {"key": key, "what": what, "pid": os.getpid(), "host": socket.gethostname(),
                  "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(seconds, 3)}
        try:
            with (self.root / BUILD_LOG).open("a") as f:  # one short O_APPEND write: whole lines when concurrent
                f.write(json.dumps(record) + "\n")
        except OSError as err:  # the entry is built and usable; only the record is lost
            log.warning("cannot record the build in %s: %s", self.root / BUILD_LOG, err)
        log.info("built the %s %s in %.1f s", self.kind, final, seconds)
        return result
