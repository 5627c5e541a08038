"""One token store per corpus content and settings, built once and shared by every process.

``<cache_dir>/corpora/<key>/`` holds the store whose cache key is ``key`` (a hash of the corpus
files' contents, or the generator's settings, plus every setting that changes the ids). The first
process that needs it builds it; every later run, sweep job and DDP rank maps it:

* the build runs under a file lock (``<key>.lock``, released by the OS if the builder dies), so
  when several processes need the same new store at once, one builds and the others wait, then map;
* it builds into a temporary folder ``.tmp-<key>-*`` and renames it into place only when complete,
  so a build killed halfway leaves nothing that passes for a store; the next builder removes the
  leftovers (under the same lock, so never a folder someone is still writing);
* every finished build appends one JSON line to ``<cache_dir>/corpora/builds.log`` (who, when,
  how long), which is how the tests count builds.

A cache directory that cannot be written, or a full disk, is a :class:`DataError` naming the
directory and ``paths.cache_dir``.
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from attnlab.data.token_store import TokenStore, store_is_complete
from attnlab.errors import DataError

__all__ = ["BUILD_LOG", "cache_key", "corpora_root", "open_or_build", "read_build_log"]

log = logging.getLogger(__name__)

BUILD_LOG = "builds.log"
# No space, no quota, no permission, read-only, or a file size limit (ulimit -f).
_DISK_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}
_session_root: Path | None = None


def cache_key(settings: Mapping[str, Any]) -> str:
    """A short, stable hash of ``settings`` (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:24]


def corpora_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    """``<cache_dir>/corpora``; without a cache dir, a folder of this process removed at exit."""
    global _session_root
    if cache_dir is not None:
        return Path(cache_dir).expanduser() / "corpora"
    if _session_root is None:
        _session_root = Path(tempfile.mkdtemp(prefix="attnlab-corpora-"))
        atexit.register(shutil.rmtree, _session_root, True)
    return _session_root


def _disk_error(err: OSError, where: Path) -> DataError:
    return DataError(
        f"cannot write the corpus store under {where}: {err.strerror or err}; free space there or point "
        f"paths.cache_dir (data.cache_dir) at a writable directory with room for the tokenised corpus"
    )


def read_build_log(cache_dir: str | os.PathLike[str] | None) -> list[dict[str, Any]]:
    """The finished builds recorded under ``cache_dir`` (oldest first), one dict per build."""
    path = corpora_root(cache_dir) / BUILD_LOG
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _acquire(lock: FileLock, what: str) -> None:
    try:
        lock.acquire(timeout=0.5)
    except Timeout:
        log.info("waiting for another process to finish building %s (lock %s)", what, lock.lock_file)
        lock.acquire()


def _remove_leftovers(root: Path, key: str) -> None:
    """Temporary folders of builds of ``key`` that died (only called while holding ``key``'s lock)."""
    for old in root.glob(f".tmp-{key}-*"):
        log.info("removing an unfinished build %s", old)
        shutil.rmtree(old, ignore_errors=True)


def open_or_build(
    cache_dir: str | os.PathLike[str] | None,
    settings: Mapping[str, Any],
    build: Callable[[Path], Any],
    what: str,
) -> TokenStore:
    """The store for ``settings``: mapped if it exists, else built by ``build(tmp_folder)`` first.

    ``what`` names the corpus in log lines. Errors from ``build`` (bad input) propagate after its
    temporary folder is removed.
    """
    root = corpora_root(cache_dir)
    key = cache_key(settings)
    final = root / key
    if store_is_complete(final):
        log.info("translation corpus store %s (cached)", final)
        return TokenStore(final)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(root / f"{key}.lock"))
        _acquire(lock, what)
    except OSError as err:
        raise _disk_error(err, root) from None
    try:
        if store_is_complete(final):  # built by the process we waited for
            log.info("translation corpus store %s (built by another process)", final)
            return TokenStore(final)
        _build_locked(root, key, final, settings, build, what)
        return TokenStore(final)
    finally:
        lock.release()


def _build_locked(
    root: Path, key: str, final: Path, settings: Mapping[str, Any], build: Callable[[Path], Any], what: str
) -> None:
    _remove_leftovers(root, key)
    if final.exists():  # damaged (a file missing or of the wrong size): rebuild it
        log.warning("corpus store %s is incomplete or damaged; rebuilding it", final)
        trash = root / f".tmp-{key}-damaged"
        os.rename(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    log.info("building the translation corpus store for %s in %s (once; later runs map it)", what, final)
    started = time.perf_counter()
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=root))
    except OSError as err:
        raise _disk_error(err, root) from None
    try:
        build(tmp)
        os.rename(tmp, final)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if err.errno in _DISK_ERRORS:
            raise _disk_error(err, root) from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.perf_counter() - started
    record = {"key": key, "what": what, "pid": os.getpid(), "host": socket.gethostname(),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": round(seconds, 3)}
    with (root / BUILD_LOG).open("a") as f:  # one short O_APPEND write: whole lines even when concurrent
        f.write(json.dumps(record) + "\n")
    log.info("built the translation corpus store %s in %.1f s", final, seconds)
