"""Translation corpora read from text / TSV / .gz files (TranslationFilesDataModule): batches,
columns, normalisation, max_len, and the clear errors for bad files."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from attnlab.data.parallel_files import normalize_text, read_lines
from attnlab.data.translation import TranslationFilesDataModule
from attnlab.errors import DataError
from tests.test_translation_data import BATCH_KEYS

EN = [
    "The cat sleeps.",
    "A dog runs fast!",
    "Where is the café?",
    "I like green apples, don't you?",
    "The  old   man reads.",
    "We went to Zürich yesterday.",
]
FR = [
    "Le chat dort.",
    "Un chien court vite !",
    "Où est le café ?",
    "J'aime les pommes vertes, pas toi ?",
    "Le vieil homme lit.",
    "Nous sommes allés à Zurich hier.",
]


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def files_dm(tmp_path: Path, **kw) -> TranslationFilesDataModule:
    args = dict(batch_size=4, cache_dir=tmp_path / "cache", src_vocab_size=120, tgt_vocab_size=120, min_frequency=1)
    args.update(kw)
    return TranslationFilesDataModule(**args)


def test_text_files_to_batches(tmp_path: Path) -> None:
    src = write(tmp_path / "train.en", EN * 5)
    tgt = write(tmp_path / "train.fr", FR * 5)
    val_src = write(tmp_path / "val.en", EN[:3])
    val_tgt = write(tmp_path / "val.fr", FR[:3])
    dm = files_dm(tmp_path, train_src=str(src), train_tgt=str(tgt), val_src=str(val_src), val_tgt=str(val_tgt))
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 30 and list(dm.datasets["test"].src_text) == list(dm.datasets["val"].src_text)
    assert dm.src_tokenizer.kind == "bpe"
    batches = list(dm.train_dataloader())
    assert sum(len(b["src_text"]) for b in batches) == 30
    for batch in batches:
        assert set(batch) == BATCH_KEYS
        assert [dm.tgt_tokenizer.decode(r) for r in batch["tgt_out"]] == batch["tgt_text"]
    # References are normalised like the training text (whitespace collapsed here).
    assert "The old man reads." in dm.datasets["train"].src_text
    val = next(iter(dm.val_dataloader()))
    assert sorted(val["tgt_text"]) == sorted(FR[:3])


def test_tsv_files_with_extra_columns_and_chosen_columns(tmp_path: Path) -> None:
    rows = [f"{i}\t{fr}\t{en}\tCC-BY" for i, (en, fr) in enumerate(zip(EN, FR))]
    train = write(tmp_path / "train.tsv", rows * 4 + [""])  # a trailing blank line is fine
    val = write(tmp_path / "val.tsv", rows[:2])
    dm = files_dm(
        tmp_path,
        format="tsv",
        train_tsv=str(train),
        val_tsv=str(val),
        test_tsv=str(val),
        tsv_src_col=2,
        tsv_tgt_col=1,
        lowercase=True,
        tokenizer="word",
    )
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 24
    assert dm.pairs["val"][0] == ("the cat sleeps.", "le chat dort.")
    batch = next(iter(dm.test_dataloader()))
    assert set(batch) == BATCH_KEYS and batch["src"].shape[0] == 2


def test_normalisation_and_gzip(tmp_path: Path) -> None:
    assert normalize_text("ｆｕｌｌ\u00a0width  ﬁne\t", normalize="NFKC") == "full width fine"
    assert normalize_text("Ｃafé ", lowercase=True, normalize=None) == "ｃafé"
    gz = tmp_path / "x.txt.gz"
    gz.write_bytes(gzip.compress("\ufeffone\r\ntwo\n".encode()))
    assert read_lines(gz, "train_src") == ["one", "two"]
    with pytest.raises(DataError, match="NFKX"):
        normalize_text("a", normalize="NFKX")


def test_max_len_drops_long_training_pairs_only(tmp_path: Path) -> None:
    long_en = " ".join(["word"] * 30)
    src = write(tmp_path / "train.en", EN + [long_en])
    tgt = write(tmp_path / "train.fr", FR + ["mot"])
    val_src = write(tmp_path / "val.en", [long_en])
    val_tgt = write(tmp_path / "val.fr", ["mot"])
    dm = files_dm(
        tmp_path,
        train_src=str(src),
        train_tgt=str(tgt),
        val_src=str(val_src),
        val_tgt=str(val_tgt),
        max_len=20,
        tokenizer="word",
    )
    dm.setup("fit")
    assert dm.n_dropped_long == 1 and len(dm.datasets["train"]) == len(EN)
    assert list(dm.datasets["val"].src_text) == [long_en]


# Bad input: each message names what is wrong, where, and what to set.


def test_missing_file_names_the_path_and_key(tmp_path: Path) -> None:
    src = write(tmp_path / "train.en", EN)
    missing = tmp_path / "nope" / "train.fr"
    dm = files_dm(tmp_path, train_src=str(src), train_tgt=str(missing), val_src=str(src), val_tgt=str(src))
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert str(missing) in msg and "data.train_tgt" in msg and "does not exist" in msg


def test_unset_val_path_says_what_to_set(tmp_path: Path) -> None:
    src = write(tmp_path / "train.en", EN)
    dm = files_dm(tmp_path, train_src=str(src), train_tgt=str(src))
    with pytest.raises(DataError, match=r"data.val_src is not set: set data.train_src="):
        dm.setup("fit")


def test_mismatched_line_counts_name_both_files_and_counts(tmp_path: Path) -> None:
    src = write(tmp_path / "train.en", EN)
    tgt = write(tmp_path / "train.fr", FR[:-2])
    dm = files_dm(tmp_path, train_src=str(src), train_tgt=str(tgt), val_src=str(src), val_tgt=str(src))
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert str(src) in msg and str(tgt) in msg and "has 6 lines" in msg and "has 4 lines" in msg


def test_bad_utf8_names_the_line(tmp_path: Path) -> None:
    src = write(tmp_path / "train.en", EN)
    bad = tmp_path / "train.fr"
    bad.write_bytes(("\n".join(FR[:3]) + "\n").encode() + "Caf\xe9 cr\xe8me\n".encode("latin-1") + b"ok\n")
    dm = files_dm(tmp_path, train_src=str(src), train_tgt=str(bad), val_src=str(src), val_tgt=str(src))
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert str(bad) in msg and "line 4" in msg and "UTF-8" in msg and "0xe9" in msg and "column 4" in msg


def test_short_tsv_line_names_the_line(tmp_path: Path) -> None:
    tsv = write(tmp_path / "train.tsv", ["a\tb\tc", "d\te\tf", "only two\tcolumns", "g\th\ti"])
    dm = files_dm(tmp_path, format="tsv", train_tsv=str(tsv), val_tsv=str(tsv), tsv_src_col=0, tsv_tgt_col=2)
    with pytest.raises(DataError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert str(tsv) in msg and "line 3" in msg and "2 tab-separated column(s), need at least 3" in msg


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    src = write(tmp_path / "train.en", EN)
    tgt = write(tmp_path / "train.fr", FR)
    empty = tmp_path / "val.en"
    empty.write_text("")
    blank = tmp_path / "val.fr"
    blank.write_text("")
    dm = files_dm(tmp_path, train_src=str(src), train_tgt=str(tgt), val_src=str(empty), val_tgt=str(blank))
    with pytest.raises(DataError, match=r"the val split is empty: .*val.en \(data.val_src\)"):
        dm.setup("fit")
    with pytest.raises(DataError, match="data.format='csv' is unknown"):
        files_dm(tmp_path, format="csv")
