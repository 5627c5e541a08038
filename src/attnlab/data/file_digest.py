"""Content digests of corpus files, remembered by ``stat`` so a warm start does not re-read them.

Hashing a multi-GB corpus on every run would cost seconds per job and per rank, so the digest of
each file is memoised under ``<memo_dir>/<hash of the absolute path>.json`` together with the
file's ``(size, mtime_ns, ctime_ns, inode, device)``. A memo is used only while all five still
match; any write to the file changes ``ctime`` (which, unlike ``mtime``, cannot be set back by
``touch -d`` or ``rsync -t``), so a changed file is always hashed again.

One race remains with any stat-based memo: a write in the same clock tick as the hashing, which
leaves the size and timestamps unchanged. A memo is therefore trusted only when the file had
been left alone for :data:`SETTLE_SECONDS` before it was hashed (git's "racily clean" rule);
otherwise the file is simply hashed again on the next run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

__all__ = ["SETTLE_SECONDS", "file_digest"]

log = logging.getLogger(__name__)

#: A memo is trusted only if the file's last change was at least this long before it was hashed.
SETTLE_SECONDS = 2.0
_CHUNK = 1 << 22


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _hash_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: str | os.PathLike[str], memo_dir: str | os.PathLike[str] | None) -> str:
    """SHA-256 of the bytes of ``path`` (as stored: a ``.gz`` file is hashed compressed).

    ``memo_dir``: where to remember digests by ``stat`` (``None``: always hash). A memo that
    cannot be read or written is ignored: it only ever saves time.
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
    after = path.stat()
    if memo is not None and _stat_key(after) == _stat_key(st):
        settled = (hashed_at - max(st.st_mtime_ns, st.st_ctime_ns)) / 1e9 >= SETTLE_SECONDS
        entry = {"path": str(path), "stat": _stat_key(st), "sha256": digest, "settled": settled}
        tmp = None
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=memo.parent, prefix=memo.name, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(entry, f)
            os.replace(tmp, memo)
        except OSError as err:  # a read-only cache still works, it just hashes every time
            log.debug("cannot write the digest memo %s: %s", memo, err)
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
    return digest
