"""Translation data: the generated corpus, bucketing, batches (the file readers: test_translation_files.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from attnlab.data import synthetic_translation as st
from attnlab.data.samplers import BucketBatchSampler, EpochRandomSampler
from attnlab.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from attnlab.data.translation import TranslationDataModule, TranslationFilesDataModule
from attnlab.data.translation_base import padding_waste
from attnlab.errors import DataError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
BATCH_KEYS = {"src", "src_mask", "src_lengths", "tgt_in", "tgt_out", "src_text", "tgt_text", "src_num_words", "index"}


def small_dm(tmp_path: Path, **kw) -> TranslationDataModule:
    args = dict(n_train=1500, n_val=120, n_test=80, batch_size=32, cache_dir=tmp_path / "cache", seed=1)
    args.update(kw)
    dm = TranslationDataModule(**args)
    dm.setup("fit")
    return dm


# --------------------------------------------------------------------------------------------
# Generated corpus
# --------------------------------------------------------------------------------------------


def test_generator_is_deterministic_from_the_seed() -> None:
    a = st.make_splits(300, 40, 40, seed=7)
    b = st.make_splits(300, 40, 40, seed=7)
    c = st.make_splits(300, 40, 40, seed=8)
    assert a == b
    assert a["train"] != c["train"]
    assert st.generate_corpus(50, seed=1) == st.generate_corpus(50, seed=1)


def test_lengths_spread_with_a_real_share_of_long_sentences() -> None:
    stats = st.corpus_statistics(st.generate_corpus(4000, seed=0))
    assert stats["src_len_min"] <= 4 and stats["src_len_max"] >= 45
    assert 0.25 <= stats["share_gt_20"] <= 0.45
    assert stats["share_gt_30"] >= 0.08
    # Every 5-token bin from 0 to 44 is populated: no gaps in BLEU-by-length plots.
    assert all(stats["src_len_hist"].get(f"{b}-{b + 4}", 0) > 20 for b in range(0, 45, 5))
    lengths = [len(s.split()) for s, _ in st.generate_corpus(500, seed=1, min_len=10, max_len=20)]
    assert min(lengths) >= 10 and max(lengths) <= 20


def test_target_reorders_and_agrees_rather_than_mapping_word_by_word() -> None:
    pairs = st.generate_corpus(2000, seed=2)
    differs = 0
    for src, tgt in pairs:
        src_c, tgt_c = st.content_concepts(src, "src"), st.content_concepts(tgt, "tgt")
        assert Counter(src_c) == Counter(tgt_c), (src, tgt)  # same content words...
        differs += src_c != tgt_c  # ...in another order
    assert differs / len(pairs) > 0.85
    # Golden pairs (the first sentences of seed 0) showing the rules: a clause-final time adverb
    # comes first; adjectives follow their noun and agree with it (kutij-e tesk-e: feminine
    # plural); the verb is final and agrees with its subject; "ta" marks the past; a
    # subordinate clause ends with its subordinator (kogat = when, dodek = while).
    golden = st.generate_corpus(6, seed=0)
    assert golden[2] == (
        "our farmer opens my heavy boxes today but the red teachers danced .",
        "dnesk naso poleno moje kutije teske otvaret no le ulare crvene plasent ta .",
    )
    assert golden[5] == ("she swam now .", "sega onka plivet ta .")


def test_translation_is_a_function_of_the_source() -> None:
    seen: dict[str, str] = {}
    for src, tgt in st.generate_corpus(20000, seed=4):
        assert seen.setdefault(src, tgt) == tgt, src
    assert len(seen) < 20000  # duplicates did occur, so the check had teeth


def test_vocabularies_are_modest_and_distinct() -> None:
    src_vocab, tgt_vocab = st.vocabulary(st.generate_corpus(5000, seed=0))
    assert 200 <= len(src_vocab) <= 500 and 200 <= len(tgt_vocab) <= 500
    assert src_vocab & tgt_vocab == {"."}


def test_eval_splits_hold_no_training_source() -> None:
    splits = st.make_splits(2000, 200, 200, seed=0)
    train = {s for s, _ in splits["train"]}
    val = {s for s, _ in splits["val"]}
    test = {s for s, _ in splits["test"]}
    assert not (train & val) and not (train & test) and not (val & test)
    assert len(splits["val"]) == 200 and len(splits["test"]) == 200


# --------------------------------------------------------------------------------------------
# DataModule, batches, bucketing
# --------------------------------------------------------------------------------------------


def test_batch_format(tmp_path: Path) -> None:
    dm = small_dm(tmp_path)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == BATCH_KEYS
    src, mask, lengths = batch["src"], batch["src_mask"], batch["src_lengths"]
    b, s = src.shape
    assert b == 32 and src.dtype == torch.long and mask.dtype == torch.bool and mask.shape == (b, s)
    assert lengths.shape == (b,) and int(lengths.max()) == s
    assert torch.equal(mask.sum(1), lengths) and torch.equal(mask, src != PAD_ID)
    assert torch.equal(src[torch.arange(b), lengths - 1], torch.full((b,), EOS_ID))
    tgt_in, tgt_out = batch["tgt_in"], batch["tgt_out"]
    assert tgt_in.shape == tgt_out.shape and tgt_in.shape[0] == b
    assert (tgt_in[:, 0] == BOS_ID).all()
    tgt_len = (tgt_out != PAD_ID).sum(1)
    assert torch.equal(tgt_out[torch.arange(b), tgt_len - 1], torch.full((b,), EOS_ID))
    shifted = tgt_out[:, :-1].masked_fill(tgt_out[:, :-1] == EOS_ID, PAD_ID)
    assert torch.equal(tgt_in[:, 1:], shifted)  # teacher forcing: the same ids shifted by one
    assert torch.equal((tgt_in != PAD_ID).sum(1), tgt_len)
    assert EOS_ID not in tgt_in and BOS_ID not in tgt_out and BOS_ID not in src
    # Each pair's position in its split (test outputs are written back in reference order).
    dataset = dm.train_dataloader().dataset
    assert [dataset.tgt_text[i] for i in batch["index"].tolist()] == batch["tgt_text"]
    assert batch["src_num_words"].tolist() == [len(t.split()) for t in batch["src_text"]]
    # The ids decode back to the reference text.
    assert [dm.tgt_tokenizer.decode(row) for row in tgt_out] == batch["tgt_text"]
    assert [dm.src_tokenizer.decode(row) for row in src] == batch["src_text"]


def test_model_kwargs_and_fixed_examples(tmp_path: Path) -> None:
    dm = small_dm(tmp_path)
    kw = dm.model_kwargs()
    assert kw["pad_id"] == 0 and kw["bos_id"] == 2 and kw["eos_id"] == 3
    assert kw["src_vocab_size"] == dm.src_tokenizer.vocab_size > 200
    assert kw["tgt_vocab_size"] == dm.tgt_tokenizer.vocab_size > 200
    assert kw["tgt_tokenizer_json"] == dm.tgt_tokenizer.to_json() != kw["src_tokenizer_json"]
    examples = dm.fixed_examples(4)
    assert examples == small_dm(tmp_path).fixed_examples(4)  # same on every run
    assert len(set(examples)) == 4 and all(pair in dm.pairs["val"] for pair in examples)
    lengths = [len(s.split()) for s, _ in examples]
    assert lengths == sorted(lengths) and lengths[-1] >= 2 * lengths[0]


def test_bucketing_reduces_padding_waste(tmp_path: Path) -> None:
    bucketed = small_dm(tmp_path, bucketing=True)
    unbucketed = small_dm(tmp_path, bucketing=False)
    w_b, w_r = padding_waste(bucketed.train_dataloader()), unbucketed.padding_waste(unbucketed.train_dataloader())
    assert w_b < 0.15 and w_r > 0.4 and w_b < w_r / 3
    # The waste really is the share of pad tokens in the tensors the loader yields.
    pads = slots = 0
    for batch in bucketed.train_dataloader():
        for key in ("src", "tgt_out"):
            pads += int((batch[key] == PAD_ID).sum())
            slots += batch[key].numel()
    assert pads / slots == pytest.approx(w_b)
    # Every example appears exactly once per epoch.
    seen = [i for batch in bucketed.train_dataloader().batch_sampler for i in batch]
    assert sorted(seen) == list(range(len(bucketed.datasets["train"])))


def test_batch_order_is_deterministic_per_seed_and_epoch(tmp_path: Path) -> None:
    def order(dm: TranslationDataModule, epoch: int) -> list[list[int]]:
        loader = dm.train_dataloader()
        loader.batch_sampler.set_epoch(epoch)
        return list(loader.batch_sampler)

    a, b = small_dm(tmp_path, seed=5), small_dm(tmp_path, seed=5)
    assert order(a, 0) == order(b, 0) and order(a, 3) == order(b, 3)
    assert order(a, 0) != order(a, 1)
    assert order(a, 0) != order(small_dm(tmp_path, seed=6), 0)
    val1 = [batch["src_text"] for batch in a.val_dataloader()]
    val2 = [batch["src_text"] for batch in a.val_dataloader()]
    assert val1 == val2  # never shuffled
    lengths = [int(n) for batch in a.val_dataloader() for n in batch["src_lengths"]]
    assert lengths == sorted(lengths)  # in length order


def test_lightning_injects_a_distributed_sampler_into_the_bucket_sampler(tmp_path: Path) -> None:
    """Under DDP Lightning rebuilds the batch sampler around a DistributedSampler: each rank must
    get its own shard, bucketed, with the same number of batches (or DDP hangs)."""
    from lightning_fabric.utilities.data import _replace_dunder_methods
    from pytorch_lightning.trainer.states import RunningStage
    from pytorch_lightning.utilities.data import _update_dataloader
    from torch.utils.data import BatchSampler, DataLoader
    from torch.utils.data.distributed import DistributedSampler

    dm = small_dm(tmp_path)
    # What the Trainer does when it asks for a loader: record constructor arguments.
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = dm.train_dataloader()
    shards = []
    for rank in range(2):
        sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        new = _update_dataloader(loader, sampler, mode=RunningStage.TRAINING)
        assert isinstance(new.batch_sampler, BucketBatchSampler) and new.batch_sampler.sampler is sampler
        assert new.batch_sampler.shuffles()
        shards.append([i for batch in new.batch_sampler for i in batch])
        assert padding_waste(new) < 0.2
    assert len(shards[0]) == len(shards[1]) == 750
    assert not set(shards[0]) & set(shards[1])


def test_real_trainer_sets_the_epoch_and_reshuffles(tmp_path: Path) -> None:
    import pytorch_lightning as pl

    class Recorder(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.first_batches: list[list[str]] = []

        def training_step(self, batch, batch_idx):
            if batch_idx == 0:
                self.first_batches.append(batch["src_text"])
            return (self.w * batch["src"].float().mean()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    dm = TranslationDataModule(n_train=300, n_val=20, n_test=20, batch_size=16, cache_dir=tmp_path, seed=3)
    model = Recorder()
    trainer = pl.Trainer(
        max_epochs=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    assert len(model.first_batches) == 2 and model.first_batches[0] != model.first_batches[1]
    # Reproducible outside the Trainer from (seed, epoch) alone.
    loader = dm.train_dataloader()
    for epoch, texts in enumerate(model.first_batches):
        loader.batch_sampler.set_epoch(epoch)
        assert [dm.datasets["train"].src_text[i] for i in next(iter(loader.batch_sampler))] == texts
    # overfit_batches (debug=overfit) must see the same batches every epoch.
    model = Recorder()
    trainer = pl.Trainer(
        max_epochs=2,
        overfit_batches=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=dm)
    assert len(model.first_batches) == 2 and model.first_batches[0] == model.first_batches[1]


def test_epoch_random_sampler_and_plain_random_batching(tmp_path: Path) -> None:
    sampler = EpochRandomSampler(range(100), seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    assert sorted(first) == list(range(100)) and list(sampler) != first
    plain = BucketBatchSampler(sampler, 30, drop_last=True, lengths=list(range(100)), bucketing=False)
    assert len(plain) == 3 and [len(b) for b in plain] == [30, 30, 30]


def test_hydra_configs_compose_and_instantiate(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            overrides=[
                "+data=translation",
                f"+paths.cache_dir={tmp_path}",
                "+seed=9",
                "data.n_train=400",
                "data.n_val=30",
                "data.n_test=30",
            ]
        )
        files_cfg = compose(overrides=["+data=translation_files", f"+paths.cache_dir={tmp_path}"])
    assert cfg.data.task == "translation" and files_cfg.data.task == "translation"
    data = dict(cfg.data)
    data.pop("task")
    dm = instantiate(data)
    assert isinstance(dm, TranslationDataModule) and dm.seed == 9 and dm.cache_dir == str(tmp_path)
    dm.setup("fit")
    assert len(dm.datasets["train"]) == 400 and next(iter(dm.val_dataloader()))["src"].shape[0] == 30
    files = dict(files_cfg.data)
    files.pop("task")
    fdm = instantiate(files)
    assert isinstance(fdm, TranslationFilesDataModule) and fdm.tokenizer_kind == "bpe" and fdm.seed == 0
    with pytest.raises(
        DataError, match=r"data.train_src is not set: set data.train_src=.*data.format=tsv data.train_tsv="
    ):
        fdm.setup("fit")


# --------------------------------------------------------------------------------------------
# Files on disk
# --------------------------------------------------------------------------------------------


def test_importing_the_data_package_stays_light() -> None:
    """`import attnlab.data` must not pull in torch/Lightning (train.py --help stays fast)."""
    import subprocess
    import sys

    code = (
        "import sys, attnlab.data; "
        "heavy = [m for m in ('torch', 'pytorch_lightning', 'tokenizers') if m in sys.modules]; "
        "assert not heavy, heavy; "
        "assert 'TranslationDataModule' in attnlab.data.__all__"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    # The lazy names resolve to the real classes.
    import attnlab.data

    assert attnlab.data.TranslationDataModule is TranslationDataModule
    assert not hasattr(attnlab.data, "DataError")  # one import path: attnlab.errors
