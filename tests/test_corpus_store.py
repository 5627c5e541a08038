"""The translation token store: built once per content, shared, invalidated, crash- and race-safe."""

from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from attnlab.data.content_cache import read_build_log
from attnlab.data.token_store import corpus_cache, store_is_complete
from attnlab.data.tokenizer import TextTokenizer
from attnlab.data.translation import TranslationDataModule, TranslationFilesDataModule
from attnlab.errors import DataError

from .helpers import REPO

EN = [
    "The cat sleeps.",
    "A dog runs fast!",
    "Where is the café?",
    "I like green apples, don't you?",
    "The old man reads.",
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


def corpus(folder: Path, repeat: int = 5) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", repeat), ("val", 1)):
        for side, lines in (("src", EN), ("tgt", FR)):
            path = folder / f"{split}.{side}"
            path.write_text("\n".join(lines * n) + "\n", encoding="utf-8")
            out[f"{split}_{side}"] = str(path)
    return out


def files_dm(paths: dict[str, str], cache: Path, **kw) -> TranslationFilesDataModule:
    args = dict(batch_size=4, cache_dir=str(cache), src_vocab_size=120, tgt_vocab_size=120, min_frequency=1)
    args.update(paths)
    args.update(kw)
    return TranslationFilesDataModule(**args)


def builds(cache: Path) -> list[dict]:
    return read_build_log(corpus_cache(cache).root)


def test_second_setup_maps_the_store_without_rebuilding(tmp_path: Path) -> None:
    paths, cache = corpus(tmp_path / "data"), tmp_path / "cache"
    first = files_dm(paths, cache)
    first.setup("fit")
    second = files_dm(paths, cache)
    second.setup("fit")
    assert len(builds(cache)) == 1
    assert second.store.path == first.store.path and store_is_complete(second.store.path)
    assert second.model_kwargs() == first.model_kwargs()
    batch_a, batch_b = next(iter(first.val_dataloader())), next(iter(second.val_dataloader()))
    assert batch_a["tgt_text"] == batch_b["tgt_text"] and (batch_a["src"] == batch_b["src"]).all()
    # Ids as uint16 (the vocabulary fits), the training text is not stored, val/test text is.
    split = second.store.splits["train"]
    assert split.ids["src"].dtype == np.uint16 and split.text["src"] is None
    assert not list(second.store.path.glob("train/*.txt"))
    assert list(second.datasets["val"].tgt_text) == FR
    # Another id-changing setting is another store.
    files_dm(paths, cache, src_vocab_size=100).setup("fit")
    files_dm(paths, cache, lowercase=True).setup("fit")
    assert len({b["key"] for b in builds(cache)}) == 3


def test_generated_corpus_goes_through_the_same_store(tmp_path: Path) -> None:
    kw = dict(n_train=300, n_val=20, n_test=20, batch_size=16, cache_dir=str(tmp_path))
    a = TranslationDataModule(**kw)
    a.setup("fit")
    b = TranslationDataModule(**kw, seed=5)  # the batch order is not part of the key
    b.setup("fit")
    TranslationDataModule(**{**kw, "corpus_seed": 1}).setup("fit")
    keys = [r["key"] for r in builds(tmp_path)]
    assert len(keys) == 2 and keys[0] != keys[1] and a.store.path == b.store.path
    assert a.fixed_examples(3) == b.fixed_examples(3)


def test_without_a_cache_dir_the_store_is_private_to_the_process() -> None:
    dm = TranslationDataModule(n_train=200, n_val=10, n_test=10, batch_size=8, cache_dir=None)
    dm.setup("fit")
    assert "attnlab-corpora-" in str(dm.store.path) and len(dm.datasets["train"]) == 200


def test_a_changed_file_invalidates_its_store(tmp_path: Path) -> None:
    paths, cache = corpus(tmp_path / "data"), tmp_path / "cache"
    dm = files_dm(paths, cache)
    dm.setup("fit")
    old = dm.store.path
    # Same size, mtime set back to the old value: only the content (and ctime) changed.
    val_tgt = Path(paths["val_tgt"])
    st = val_tgt.stat()
    changed = val_tgt.read_text(encoding="utf-8").replace("chat", "chut")
    time.sleep(0.01)
    val_tgt.write_text(changed, encoding="utf-8")
    os.utime(val_tgt, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert val_tgt.stat().st_size == st.st_size and val_tgt.stat().st_mtime_ns == st.st_mtime_ns
    again = files_dm(paths, cache)
    again.setup("fit")
    assert again.store.path != old and len(builds(cache)) == 2
    assert "Le chut dort." in list(again.datasets["val"].tgt_text)


def _tiny_files_args(paths: dict[str, str], cache: Path) -> dict:
    return dict(paths, batch_size=4, cache_dir=str(cache), src_vocab_size=120, tgt_vocab_size=120, min_frequency=1)


# A child that builds the store; ATTNLAB_TEST_BUILD_PAUSE makes the build wait (after staging the
# text, before the tokenizers) so the test can kill it or race another builder against it.
CHILD = textwrap.dedent("""
    import json, logging, os, sys, time
    from pathlib import Path
    logging.basicConfig(level=logging.INFO)
    import attnlab.data.corpus_build as cb
    pause = float(os.environ.get("ATTNLAB_TEST_BUILD_PAUSE", "0"))
    train_tokenizers = cb._train_tokenizers
    def slow(*args, **kwargs):
        Path(os.environ["ATTNLAB_TEST_MARKER"]).touch()
        time.sleep(pause)
        return train_tokenizers(*args, **kwargs)
    cb._train_tokenizers = slow
    from attnlab.data.translation import TranslationFilesDataModule
    start = Path(os.environ.get("ATTNLAB_TEST_START", ""))
    while os.environ.get("ATTNLAB_TEST_START") and not start.exists():
        time.sleep(0.01)
    dm = TranslationFilesDataModule(**json.loads(sys.argv[1]))
    dm.setup("fit")
    print(json.dumps({"store": str(dm.store.path), "val": list(dm.datasets["val"].tgt_text)}))
""")


def _spawn(args: dict, env: dict[str, str]) -> subprocess.Popen:
    full = {**os.environ, "PYTHONPATH": str(REPO / "src"), **env}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        cwd=REPO,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_build_killed_halfway_is_ignored_and_rebuilt(tmp_path: Path) -> None:
    paths, cache = corpus(tmp_path / "data"), tmp_path / "cache"
    marker = tmp_path / "staged"
    proc = _spawn(
        _tiny_files_args(paths, cache), {"ATTNLAB_TEST_BUILD_PAUSE": "600", "ATTNLAB_TEST_MARKER": str(marker)}
    )
    deadline = time.monotonic() + 120
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists(), proc.communicate()[1][-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    root = cache / "corpora"
    leftovers = list(root.glob(".tmp-*"))
    assert leftovers and not [p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "file-"))]
    dm = files_dm(paths, cache)
    dm.setup("fit")  # the dead builder's lock is gone with it; the half-built folder is not a store
    assert store_is_complete(dm.store.path) and not list(root.glob(".tmp-*"))
    assert len(builds(cache)) == 1
    # A store damaged later (a file truncated) is detected and rebuilt, never read.
    ids = dm.store.path / "train" / "src.ids"
    ids.write_bytes(ids.read_bytes()[:-2])
    again = files_dm(paths, cache)
    again.setup("fit")
    assert store_is_complete(again.store.path) and len(builds(cache)) == 2


def test_concurrent_builders_build_once_and_both_map_it(tmp_path: Path) -> None:
    paths, cache = corpus(tmp_path / "data"), tmp_path / "cache"
    start = tmp_path / "go"
    env = {
        "ATTNLAB_TEST_BUILD_PAUSE": "2",
        "ATTNLAB_TEST_MARKER": str(tmp_path / "m"),
        "ATTNLAB_TEST_START": str(start),
    }
    procs = [_spawn(_tiny_files_args(paths, cache), env) for _ in range(2)]
    time.sleep(0.5)
    start.touch()  # both are imported and waiting: start them together
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    results = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert results[0] == results[1] and results[0]["val"] == FR
    assert len(builds(cache)) == 1
    assert sum("waiting for another process" in o[1] or "built by another process" in o[1] for o in outs) == 1


def test_unwritable_cache_dir_names_the_directory_and_the_key(tmp_path: Path) -> None:
    paths = corpus(tmp_path / "data")
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache folder should be")
    with pytest.raises(DataError) as err:
        files_dm(paths, blocker / "cache").setup("fit")
    msg = str(err.value)
    assert str(blocker / "cache" / "corpora") in msg and "paths.cache_dir" in msg


FULL_DISK = textwrap.dedent("""
    import json, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead
    from attnlab.data.translation import TranslationFilesDataModule
    from attnlab.errors import DataError
    dm = TranslationFilesDataModule(**json.loads(sys.argv[1]))
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))
    try:
        dm.setup("fit")
    except DataError as err:
        print("DataError:", err)
""")


def test_a_full_disk_during_the_build_is_a_clear_error_and_leaves_no_store(tmp_path: Path) -> None:
    paths, cache = corpus(tmp_path / "data"), tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK, json.dumps(_tiny_files_args(paths, cache))],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "DataError: cannot write the corpus store under" in proc.stdout, proc.stderr[-2000:]
    assert str(cache / "corpora") in proc.stdout and "paths.cache_dir" in proc.stdout
    root = cache / "corpora"
    assert not list(root.glob(".tmp-*")) and not [
        p for p in root.iterdir() if p.is_dir() and p.name[0] != "." and not p.name.startswith("file-")
    ]


def test_datamodule_pickles_by_path_not_by_value(tmp_path: Path) -> None:
    dm = TranslationDataModule(n_train=3000, n_val=20, n_test=20, batch_size=16, cache_dir=str(tmp_path))
    dm.setup("fit")
    blob = pickle.dumps(dm)
    assert len(blob) < 200_000  # the tokenizers' JSON, not 3000 pairs of ids and their lengths
    copy = pickle.loads(blob)
    assert copy.store.path == dm.store.path
    a, b = next(iter(dm.val_dataloader())), next(iter(copy.val_dataloader()))
    assert a["tgt_text"] == b["tgt_text"] and (a["tgt_out"] == b["tgt_out"]).all()


def test_long_eval_sources_are_cut_with_one_counting_warning(tmp_path: Path, caplog) -> None:
    data = tmp_path / "data"
    paths = corpus(data)
    long_en, long_fr = " ".join(["word"] * 40), " ".join(["mot"] * 45)
    for side, text in (("src", long_en), ("tgt", long_fr)):
        Path(paths[f"val_{side}"]).write_text("\n".join([*(EN if side == "src" else FR), text]) + "\n")
    with caplog.at_level(logging.WARNING, logger="attnlab"):
        dm = files_dm(paths, tmp_path / "cache", eval_max_len=10, tokenizer="word")
        dm.setup("fit")
    warnings = [r.getMessage() for r in caplog.records if "eval_max_len" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("1 val and 1 test pair(s)")
    batches = list(dm.val_dataloader())
    assert max(int(b["src_lengths"].max()) for b in batches) == 11  # 10 ids + <eos>
    assert max(b["tgt_out"].shape[1] for b in batches) == 11
    refs = [t for b in batches for t in b["tgt_text"]]
    assert long_fr in refs  # BLEU scores the whole reference
    assert [int(w) for b in batches for w in b["src_num_words"]][-1] == 40


@pytest.mark.parametrize("kind", ["bpe", "word"])
def test_word_cache_encoding_matches_the_tokenizer(kind: str) -> None:
    texts = [*EN, *FR, "a  b", " lead", "trail ", "", "«Quoi?» dit-il…", "x\ty", "$100 + 5% = ?", "ﬁne ☃ 漢字"]
    tok = TextTokenizer.train(EN * 3 + FR * 3, kind=kind, vocab_size=150)
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts) == [tok.encode(t) for t in texts]  # from the word cache this time


@pytest.mark.slow
def test_ddp_cpu_and_a_joblib_sweep_build_a_new_corpus_exactly_once(tmp_path: Path) -> None:
    """Every DDP rank and every job of a parallel sweep needs the same new corpus: one build each."""
    from .helpers import TINY_TRANSLATION, run_script

    cache = tmp_path / "cache"
    common = [
        *TINY_TRANSLATION,
        "debug=limit",
        "trainer.max_epochs=1",
        "extras.print_config=false",
        "callbacks.rich_progress_bar=null",
        "logger=csv",
        f"paths.cache_dir={cache}",
        f"paths.log_dir={tmp_path / 'logs'}",
    ]
    proc = run_script(
        ["train.py", "trainer=ddp_cpu", "data.corpus_seed=11", *common, f"hydra.run.dir={tmp_path / 'ddp'}"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "ddp" / "metrics.json").read_text())["status"] == "ok"
    assert len(builds(cache)) == 1
    proc = run_script(
        [
            "train.py",
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "attention=dot,general",
            "data.corpus_seed=12",
            *common,
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/metrics.json"))]
    assert [r["status"] for r in records] == ["ok", "ok"]
    keys = [b["key"] for b in builds(cache)]
    assert len(keys) == 2 and keys[0] != keys[1]  # the sweep's two jobs built their new corpus once
