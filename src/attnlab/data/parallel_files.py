"""Reading parallel corpora from disk: two aligned plain-text files, or one TSV, per split.

Every problem a user can cause is a :class:`~attnlab.errors.DataError` whose message names the
file, the config key that points at it, and (for a bad line) the 1-based line number:

* a path that is not set, or a file that does not exist;
* source and target files with different line counts;
* a line that is not valid UTF-8, or a TSV line with too few tab-separated columns;
* a split with no usable pair.

Text is normalised the same way for training and for the references the metrics see:
optional Unicode normalisation (NFKC by default), whitespace runs collapsed to one space,
leading/trailing space stripped, optional lower-casing. Files may be gzip-compressed (``.gz``).
Files are streamed line by line (``iter_*``), so a multi-GB corpus is never held in memory; the
``read_*`` functions return lists for small files.
"""

from __future__ import annotations

import gzip
import itertools
import os
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal, cast

from attnlab.errors import DataError

__all__ = [
    "NORMALIZATIONS",
    "iter_lines",
    "iter_parallel_text",
    "iter_tsv",
    "normalize_text",
    "read_lines",
    "read_parallel_text",
    "read_tsv",
    "resolve_file",
]

NORMALIZATIONS: tuple[str, ...] = ("NFC", "NFD", "NFKC", "NFKD")
NormalForm = Literal["NFC", "NFD", "NFKC", "NFKD"]


def check_normalization(normalize: str | None) -> NormalForm | None:
    """Validate a ``normalize`` setting (``None`` or one of :data:`NORMALIZATIONS`, any case)."""
    if normalize is None:
        return None
    form = str(normalize).upper()
    if form not in NORMALIZATIONS:
        raise DataError(
            f"data.normalize={normalize!r} is not a Unicode normalisation; use one of {NORMALIZATIONS} or null"
        )
    return cast(NormalForm, form)  # one of NORMALIZATIONS, checked just above


def normalize_text(text: str, lowercase: bool = False, normalize: str | None = "NFKC") -> str:
    """Unicode-normalise (``normalize``), collapse whitespace to single spaces, strip, lower-case.

    NFKC also folds compatibility characters (full-width letters, ligatures, non-breaking spaces)
    so that visually identical text gets identical tokens.
    """
    form = check_normalization(normalize)
    if form is not None:
        text = unicodedata.normalize(form, text)
    text = " ".join(text.split())
    return text.lower() if lowercase else text


def resolve_file(path: str | os.PathLike[str] | None, key: str, hint: str) -> Path:
    if path is None or str(path).strip() == "":
        raise DataError(f"data.{key} is not set: {hint}")
    p = Path(path).expanduser()
    if not p.is_file():
        where = p.resolve()
        what = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise DataError(f"data.{key}: {where} {what}; set data.{key}=<path to an existing file>")
    return p


def _open_binary(p: Path) -> BinaryIO:
    if p.suffix == ".gz":
        return cast(BinaryIO, gzip.open(p, "rb"))  # a GzipFile reads like any binary file; typeshed types it apart
    return p.open("rb")


def iter_lines(
    path: str | os.PathLike[str] | None, key: str, hint: str = "set it to a file path", skip_blank: bool = False
) -> Iterator[str]:
    """The lines of a UTF-8 file (``.gz`` allowed), one at a time, without line terminators.

    Streams the file, so memory stays flat however large it is. Lines are split on ``\\n`` only
    (``\\r\\n`` is accepted; other Unicode line separators stay inside a line, so line numbers
    match ``wc -l`` / editors). A byte-order mark is dropped. ``skip_blank`` drops lines that are
    empty or whitespace only. ``key`` is the config key naming the file, used in error messages.
    The path is checked when this is called, the lines are read as they are consumed.
    """
    p = resolve_file(path, key, hint)
    return _lines(p, key, skip_blank)


def _lines(p: Path, key: str, skip_blank: bool) -> Iterator[str]:
    with _open_binary(p) as f:
        for line_no, raw in enumerate(f, start=1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if raw.endswith(b"\n"):
                raw = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{p} (data.{key}), line {line_no}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column "
                    f"{err.start + 1}); re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
                ) from None
            if skip_blank and not line.strip():
                continue
            yield line


def read_lines(
    path: str | os.PathLike[str] | None, key: str, hint: str = "set it to a file path", skip_blank: bool = False
) -> list[str]:
    """All lines of a file as a list (see :func:`iter_lines`; fine for small files)."""
    return list(iter_lines(path, key, hint, skip_blank))


def iter_parallel_text(
    src_path: str | os.PathLike[str] | None,
    tgt_path: str | os.PathLike[str] | None,
    src_key: str,
    tgt_key: str,
    hint: str = "set it to a file path",
) -> Iterator[tuple[str, str]]:
    """Line-aligned (source, target) pairs from two plain-text files (raw, not normalised), streamed.

    Files of different lengths are an error naming both files and both line counts, raised when
    the shorter one ends (the rest of the longer one is counted, not kept).
    """
    src = iter_lines(src_path, src_key, hint)
    tgt = iter_lines(tgt_path, tgt_key, hint)
    return _zip_parallel(src, tgt, (src_path, src_key), (tgt_path, tgt_key))


def _zip_parallel(
    src: Iterator[str], tgt: Iterator[str], src_where: tuple[Any, str], tgt_where: tuple[Any, str]
) -> Iterator[tuple[str, str]]:
    for n, pair in enumerate(itertools.zip_longest(src, tgt)):
        if pair[0] is None or pair[1] is None:
            n_src = n + (pair[0] is not None) + sum(1 for _ in src)
            n_tgt = n + (pair[1] is not None) + sum(1 for _ in tgt)
            raise DataError(
                f"parallel files differ in length: {Path(str(src_where[0])).resolve()} (data.{src_where[1]}) has "
                f"{n_src} lines but {Path(str(tgt_where[0])).resolve()} (data.{tgt_where[1]}) has {n_tgt} lines; "
                "line i of the source must translate to line i of the target"
            )
        yield pair


def read_parallel_text(
    src_path: str | os.PathLike[str] | None,
    tgt_path: str | os.PathLike[str] | None,
    src_key: str,
    tgt_key: str,
    hint: str = "set it to a file path",
) -> list[tuple[str, str]]:
    """All pairs of :func:`iter_parallel_text` as a list."""
    return list(iter_parallel_text(src_path, tgt_path, src_key, tgt_key, hint))


def iter_tsv(
    path: str | os.PathLike[str] | None,
    key: str,
    src_col: int = 0,
    tgt_col: int = 1,
    hint: str = "set it to a file path",
) -> Iterator[tuple[str, str]]:
    """(source, target) pairs from a tab-separated file, streamed; other columns are ignored.

    No quoting is interpreted (as in most MT corpora, e.g. Tatoeba exports): a tab always
    separates columns. Blank lines are skipped; a line with fewer than
    ``max(src_col, tgt_col) + 1`` columns is an error naming its line number.
    """
    if src_col < 0 or tgt_col < 0 or src_col == tgt_col:
        raise DataError(
            f"data.tsv_src_col={src_col} and data.tsv_tgt_col={tgt_col}: need two different non-negative column indices"
        )
    lines = iter_lines(path, key, hint)
    return _tsv_pairs(lines, Path(str(path)).resolve(), key, src_col, tgt_col)


def _tsv_pairs(lines: Iterator[str], where: Path, key: str, src_col: int, tgt_col: int) -> Iterator[tuple[str, str]]:
    need = max(src_col, tgt_col) + 1
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < need:
            raise DataError(
                f"{where} (data.{key}), line {line_no}: {len(cols)} tab-separated column(s), "
                f"need at least {need} for data.tsv_src_col={src_col}, data.tsv_tgt_col={tgt_col}"
            )
        yield cols[src_col], cols[tgt_col]


def read_tsv(
    path: str | os.PathLike[str] | None,
    key: str,
    src_col: int = 0,
    tgt_col: int = 1,
    hint: str = "set it to a file path",
) -> list[tuple[str, str]]:
    """All pairs of :func:`iter_tsv` as a list."""
    return list(iter_tsv(path, key, src_col, tgt_col, hint))
