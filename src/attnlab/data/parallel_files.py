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
"""

from __future__ import annotations

import gzip
import os
import unicodedata
from pathlib import Path

from attnlab.errors import DataError

__all__ = [
    "DataError",
    "NORMALIZATIONS",
    "normalize_text",
    "read_lines",
    "read_parallel_text",
    "read_tsv",
]

NORMALIZATIONS: tuple[str, ...] = ("NFC", "NFD", "NFKC", "NFKD")


def check_normalization(normalize: str | None) -> str | None:
    """Validate a ``normalize`` setting (``None`` or one of :data:`NORMALIZATIONS`, any case)."""
    if normalize is None:
        return None
    form = str(normalize).upper()
    if form not in NORMALIZATIONS:
        raise DataError(
            f"data.normalize={normalize!r} is not a Unicode normalisation; use one of {NORMALIZATIONS} or null"
        )
    return form


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


def _resolve(path: str | os.PathLike[str] | None, key: str, hint: str) -> Path:
    if path is None or str(path).strip() == "":
        raise DataError(f"data.{key} is not set: {hint}")
    p = Path(path).expanduser()
    if not p.is_file():
        where = p.resolve()
        what = "is a directory, not a file" if p.is_dir() else "does not exist"
        raise DataError(f"data.{key}: {where} {what}; set data.{key}=<path to an existing file>")
    return p


def read_lines(
    path: str | os.PathLike[str] | None, key: str, hint: str = "set it to a file path", skip_blank: bool = False
) -> list[str]:
    """All lines of a UTF-8 file (``.gz`` allowed), without line terminators.

    Lines are split on ``\\n`` only (``\\r\\n`` is accepted; other Unicode line separators stay
    inside a line, so line numbers match ``wc -l`` / editors). A byte-order mark is dropped.
    ``skip_blank`` drops lines that are empty or whitespace only. ``key`` is the config key
    naming the file, used in error messages.
    """
    p = _resolve(path, key, hint)
    raw = gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line_no = raw.count(b"\n", 0, err.start) + 1
        line_start = raw.rfind(b"\n", 0, err.start) + 1
        raise DataError(
            f"{p} (data.{key}), line {line_no}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column "
            f"{err.start - line_start + 1}); re-encode the file as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a new one
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if skip_blank:
        lines = [line for line in lines if line.strip()]
    return lines


def read_parallel_text(
    src_path: str | os.PathLike[str] | None,
    tgt_path: str | os.PathLike[str] | None,
    src_key: str,
    tgt_key: str,
    hint: str = "set it to a file path",
) -> list[tuple[str, str]]:
    """Line-aligned (source, target) pairs from two plain-text files (raw, not normalised)."""
    src = read_lines(src_path, src_key, hint)
    tgt = read_lines(tgt_path, tgt_key, hint)
    if len(src) != len(tgt):
        raise DataError(
            f"parallel files differ in length: {Path(str(src_path)).resolve()} (data.{src_key}) has {len(src)} lines "
            f"but {Path(str(tgt_path)).resolve()} (data.{tgt_key}) has {len(tgt)} lines; "
            "line i of the source must translate to line i of the target"
        )
    return list(zip(src, tgt, strict=True))


def read_tsv(
    path: str | os.PathLike[str] | None,
    key: str,
    src_col: int = 0,
    tgt_col: int = 1,
    hint: str = "set it to a file path",
) -> list[tuple[str, str]]:
    """(source, target) pairs from a tab-separated file; other columns are ignored.

    No quoting is interpreted (as in most MT corpora, e.g. Tatoeba exports): a tab always
    separates columns. Blank lines are skipped; a line with fewer than
    ``max(src_col, tgt_col) + 1`` columns is an error naming its line number.
    """
    if src_col < 0 or tgt_col < 0 or src_col == tgt_col:
        raise DataError(
            f"data.tsv_src_col={src_col} and data.tsv_tgt_col={tgt_col}: need two different non-negative column indices"
        )
    lines = read_lines(path, key, hint)
    need = max(src_col, tgt_col) + 1
    pairs: list[tuple[str, str]] = []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) < need:
            raise DataError(
                f"{Path(str(path)).resolve()} (data.{key}), line {line_no}: {len(cols)} tab-separated column(s), "
                f"need at least {need} for data.tsv_src_col={src_col}, data.tsv_tgt_col={tgt_col}"
            )
        pairs.append((cols[src_col], cols[tgt_col]))
    return pairs
