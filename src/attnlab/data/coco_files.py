"""The image files of a COCO split, checked at every setup: present, inside their folder, decodable.

* **Present and inside.** Every listed file must exist and resolve inside the split's images
  folder, symbolic links included: a link (or a linked sub-folder) that leads elsewhere is a
  :class:`DataError` naming the annotation file and the entries, before anything trains on (or
  uploads as media) a file the data set does not declare. One ``lstat`` per file; a link's target
  is resolved once per distinct target.
* **Decodable** (``data.verify_images``). Every image is decoded once at setup (JPEGs at 1/8
  scale through PIL's draft mode: the whole entropy-coded stream is still read, so truncated and
  corrupt files fail, at a fraction of the cost) and its size compared with the annotation file's.
  The unreadable ones are listed together. A split that passed is remembered in the cache by the
  stat signature of all its files, so later setups skip the decoding until a file changes.
  ``null`` (the default) verifies splits of at most :data:`VERIFY_AUTO_MAX_IMAGES` images.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from attnlab.data.coco_validate import listing
from attnlab.errors import DataError

__all__ = ["VERIFY_AUTO_MAX_IMAGES", "check_images_exist", "check_split_files", "verify_images"]

#: ``data.verify_images: null`` decodes every image of splits up to this size. Measured on 1 core
#: with the machine at load ~15 (a quiet one is ~3x faster): 1.4 ms per 128 px shapes JPEG (the
#: default set's 2,400 images: ~3 s, once) and 8 ms per 640x480 JPEG at draft scale (18 ms fully
#: decoded), so COCO's 5,000-image val split costs ~20 s on 2 cores once, then nothing until a
#: file changes.
VERIFY_AUTO_MAX_IMAGES = 5000


def _hint(images_key: str | None) -> str:
    return f" (set {images_key}, relative to data.root)" if images_key else ""


def check_images_exist(paths: Sequence[str], annotation_file: str, images_dir: str, images_key: str | None) -> None:
    """Every path is a file (the message lists the missing ones)."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(
            f"{len(missing)} image(s) listed in {annotation_file} are missing from {images_dir}"
            f"{_hint(images_key)}: {listing(missing)}"
        )


def check_split_files(
    names: Sequence[str], images_dir: str, annotation_file: str, images_key: str | None
) -> np.ndarray:
    """Each ``images_dir/name`` exists and resolves inside ``images_dir``; returns the files'
    ``(size, mtime_ns, inode)`` as int64 (M, 3), the signature :func:`verify_images` remembers."""
    real_dir = os.path.realpath(images_dir)
    inside = real_dir + os.sep
    signature = np.zeros((len(names), 3), dtype=np.int64)
    resolved: dict[str, str] = {}
    missing: list[str] = []
    outside: list[str] = []
    subdirs: dict[str, str] = {}
    folder = os.path.join(images_dir, "")
    for i, name in enumerate(names):
        path = folder + name  # names are relative and stay inside (coco_index.check_file_names)
        try:
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                target = os.path.join(os.path.dirname(path), os.readlink(path))
                real = resolved.get(target) or resolved.setdefault(target, os.path.realpath(target))
                if not real.startswith(inside):
                    outside.append(f"{name!r} -> {real}")
                    continue
                st = os.stat(path)
        except OSError:
            missing.append(path)
            continue
        if not stat.S_ISREG(st.st_mode):
            missing.append(path)
            continue
        signature[i] = (st.st_size, st.st_mtime_ns, st.st_ino)
        if os.sep in name:
            subdirs.setdefault(os.path.dirname(name), name)
    for sub, name in subdirs.items():  # a linked sub-folder moves every file under it
        real = os.path.realpath(os.path.join(images_dir, sub))
        if not (real + os.sep).startswith(inside):
            outside.append(f"{name!r} (folder {sub!r} -> {real})")
    if missing:
        raise DataError(
            f"{len(missing)} image(s) listed in {annotation_file} are missing from {images_dir}"
            f"{_hint(images_key)}: {listing(missing)}"
        )
    if outside:
        raise DataError(
            f"COCO annotation file {annotation_file}: {len(outside)} image file(s) resolve outside the images folder "
            f"{images_dir}{_hint(images_key)} through a symbolic link: {listing(outside)}. Keep the files (or "
            f"links to files) inside that folder, or point {images_key or 'the images folder'} at the folder holding them"
        )
    return signature


def _decode_problem(path: str, size: tuple[int, int]) -> str | None:
    """None when ``path`` decodes as an image of ``size`` = (width, height); else what is wrong."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.size != size:
                return f"{path}: {im.size[0]}x{im.size[1]} pixels, the annotation file says {size[0]}x{size[1]}"
            if im.format == "JPEG":
                im.draft("RGB", (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
    except Exception as e:  # noqa: BLE001 - PIL raises many kinds; each is "unreadable"
        return f"{path}: {type(e).__name__}: {e}"
    return None


def verify_images(
    paths: Sequence[str], sizes: np.ndarray, signature: np.ndarray, memo_dir: Path | None,
    annotation_file: str, images_key: str | None,
) -> bool:
    """Decode every image (see the module docstring); raise :class:`DataError` listing the unreadable.

    ``sizes`` is (M, 2) (width, height) from the annotation file. Returns False when a memo showed
    these exact files already passed (nothing decoded), True after decoding them all.
    """
    key = hashlib.sha256("\0".join(paths).encode() + sizes.tobytes() + signature.tobytes()).hexdigest()[:32]
    memo = memo_dir / f"{key}.ok" if memo_dir is not None else None
    if memo is not None and memo.is_file():
        return False
    workers = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))
    with ThreadPoolExecutor(workers) as pool:  # PIL releases the GIL while decoding
        problems = [p for p in pool.map(_decode_problem, paths, [tuple(map(int, s)) for s in sizes], chunksize=64)
                    if p is not None]
    if problems:
        raise DataError(
            f"{len(problems)} image(s) listed in {annotation_file} cannot be read: {listing(problems)}. "
            f"Replace them, or remove them from the annotation file (data.verify_images=false skips this check)"
        )
    if memo is not None:
        try:
            memo.parent.mkdir(parents=True, exist_ok=True)
            memo.touch()
        except OSError:
            pass  # only an optimisation
    return True
