"""TranslationTask with a real Trainer on a tiny generated corpus: metrics, training, checkpoints,
BLEU by length, media and scripts/translate.py."""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import sacrebleu
import torch
import yaml

from attnlab.data.translation import TranslationDataModule
from attnlab.tasks.translation import TranslationTask
from attnlab.tasks.translation_metrics import LENGTH_BUCKETS, TranslationMetrics, bucket_of

from .helpers import CONF

REPO = Path(__file__).resolve().parents[1]
TINY_NET = {"emb_dim": 16, "hidden_dim": 32, "num_layers": 1, "dropout": 0.0}
# The decoding settings (no defaults in the task): as configured, with a smaller beam and budget below.
DECODING = {
    k: v
    for k, v in yaml.safe_load((CONF / "model" / "seq2seq_attn.yaml").read_text()).items()
    if k in TranslationTask.EVAL_SETTINGS
}


def tiny_datamodule(cache_dir: Path) -> TranslationDataModule:
    dm = TranslationDataModule(
        n_train=200,
        n_val=24,
        n_test=24,
        max_len=16,
        batch_size=16,
        eval_batch_size=24,
        cache_dir=str(cache_dir),
        seed=0,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def make_task(
    dm: TranslationDataModule, kind: str = "additive", lr: float = 5e-3, one_cycle: bool = True, **kwargs
) -> TranslationTask:
    torch.manual_seed(0)
    return TranslationTask(
        attention={"kind": kind, "hidden_dim": 16} if kind == "additive" else {"kind": kind},
        net=TINY_NET,
        optimizer=functools.partial(torch.optim.AdamW, lr=lr),
        # total_steps is left out on purpose: the task fills it in from the trainer.
        scheduler=(
            functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=lr, pct_start=0.2) if one_cycle else None
        ),
        **{**DECODING, "beam_size": 3, "max_len_a": 1.2, "max_len_b": 4, **dm.model_kwargs(), **kwargs},
    )


def quiet_trainer(**kwargs) -> pl.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    return pl.Trainer(**{**defaults, **kwargs})


@pytest.fixture(scope="module")
def dm(tmp_path_factory: pytest.TempPathFactory) -> TranslationDataModule:
    return tiny_datamodule(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def fitted(
    dm: TranslationDataModule, tmp_path_factory: pytest.TempPathFactory
) -> tuple[TranslationTask, pl.Trainer, dict]:
    """A task trained for a few steps, validated and tested, plus its checkpoint and test metrics."""
    torch.set_num_threads(1)
    task = make_task(dm)
    trainer = quiet_trainer(max_epochs=2, limit_train_batches=4, limit_val_batches=1, limit_test_batches=1)
    trainer.fit(task, datamodule=dm)
    val = {k: float(v) for k, v in trainer.callback_metrics.items()}
    test = trainer.test(task, datamodule=dm, verbose=False)[0]
    ckpt = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    trainer.save_checkpoint(ckpt)
    return task, trainer, {"val": val, "test": test, "ckpt": ckpt}


def test_fit_and_test_log_the_documented_metrics(fitted) -> None:
    task, trainer, out = fitted
    val, test = out["val"], out["test"]
    for key in ("train/loss_step", "train/loss_epoch", "val/loss", "val/ppl", "val/bleu", "val/chrf"):
        assert key in val, f"{key} not logged; got {sorted(val)}"
    assert val["val/ppl"] > 1.0 and 0.0 <= val["val/bleu"] <= 100.0 and 0.0 <= val["val/chrf"] <= 100.0
    for key in ("test/bleu", "test/chrf", "test/bleu_len_01-10", "test/n_len_01-10", "test/loss"):
        assert key in test, f"{key} not logged; got {sorted(test)}"
    # The tiny corpus has sources of at most 16 tokens: long buckets are empty, hence not reported.
    assert "test/bleu_len_gt20" not in test and test["test/n_len_gt20"] == 0
    n = sum(test[f"test/n_len_{name}"] for name, _, last in LENGTH_BUCKETS if name != "gt20")
    assert n == 24  # one test batch of 24 sentences, each in exactly one disjoint bucket
    assert trainer.global_step == 8


def test_loss_decreases_on_a_tiny_overfit_batch(dm: TranslationDataModule) -> None:
    torch.set_num_threads(1)
    losses: list[float] = []

    class Record(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            losses.append(float(outputs["loss"]))

    task = make_task(dm, lr=2e-2, one_cycle=False, label_smoothing=0.0)
    quiet_trainer(max_epochs=20, overfit_batches=1, limit_val_batches=0, callbacks=[Record()]).fit(task, datamodule=dm)
    assert len(losses) == 20
    assert losses[-1] < 0.4 * losses[0], losses


def test_checkpoint_round_trip_gives_identical_outputs(fitted, dm: TranslationDataModule) -> None:
    task, _, out = fitted
    # weights_only=True: the optimizer and scheduler are stored as plain config dicts, not partials.
    loaded = TranslationTask.load_from_checkpoint(out["ckpt"], map_location="cpu", weights_only=True)
    assert loaded.hparams.optimizer == {"_target_": "torch.optim.adamw.AdamW", "lr": task.hparams.optimizer["lr"]}
    assert loaded.hparams.attention == {"kind": "additive", "hidden_dim": 16}
    assert loaded.hparams.net == TINY_NET
    task.eval()
    loaded.eval()
    batch = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(batch["src"], batch["src_lengths"], batch["tgt_in"], batch["src_mask"]),
            task(batch["src"], batch["src_lengths"], batch["tgt_in"], batch["src_mask"]),
            atol=0.0,
            rtol=0.0,
        )
    sources = batch["src_text"][:5]
    assert loaded.translate(sources) == task.translate(sources)
    assert loaded.translate(sources, beam_size=1) == task.translate(sources, beam_size=1)


def test_bleu_by_source_length_on_hand_made_strings() -> None:
    refs = [
        "the cat sat on the mat .",
        "a dog runs in the big green park today .",
        "we saw the old man with the red hat near the river yesterday .",
        "they sing .",
        "my students like the small books which the teacher brought .",
    ]
    hyps = [
        "the cat sat on the mat .",
        "a dog runs in the park today .",
        "we saw the old man with a red hat near the river .",
        "they dance .",
        "my students like the small books which the teacher brought .",
    ]
    words = [5, 12, 25, 41, 22]
    metrics = TranslationMetrics("13a")
    metrics.update(hyps[:2], refs[:2], torch.tensor(words[:2]))
    metrics.update(hyps[2:], refs[2:], words[2:])
    out = {k: float(v) for k, v in metrics.compute().items()}

    def corpus(idx: list[int]) -> float:
        return sacrebleu.corpus_bleu([hyps[i] for i in idx], [[refs[i] for i in idx]], tokenize="13a").score

    assert out["bleu"] == pytest.approx(corpus([0, 1, 2, 3, 4]), abs=1e-3)
    assert out["bleu_len_01-10"] == pytest.approx(100.0, abs=1e-3)
    assert out["bleu_len_11-20"] == pytest.approx(corpus([1]), abs=1e-3)
    assert out["bleu_len_21-30"] == pytest.approx(corpus([2, 4]), abs=1e-3)
    assert out["bleu_len_gt40"] == pytest.approx(0.0, abs=1e-3)  # "they dance ." has no 4-gram match
    assert out["bleu_len_gt20"] == pytest.approx(corpus([2, 3, 4]), abs=1e-3)
    assert "bleu_len_31-40" not in out and out["n_len_31-40"] == 0
    assert [out[f"n_len_{b}"] for b in ("01-10", "11-20", "21-30", "gt40", "gt20")] == [1, 1, 2, 1, 3]
    assert out["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-2)
    assert bucket_of(0, 1, 10) and bucket_of(20, 11, 20) and not bucket_of(21, 11, 20) and bucket_of(99, 41, None)
    metrics.reset()
    metrics.update(["x"], ["x"], [3])
    assert set(k for k in metrics.compute() if k.startswith("bleu_len")) == {"bleu_len_01-10"}


def test_metric_states_merge_like_ddp_ranks() -> None:
    """Two ranks' states reduced as torchmetrics' DDP sync reduces them give the single-process scores."""
    from torchmetrics import Metric

    hyps = ["a b c d e .", "a b x d .", "p q r s t u v w x y z a b c d e f g h i j k .", "k l m n ."]
    refs = ["a b c d e .", "a b c d .", "p q r s t u v w x y z a b c d e f g h i j z .", "k l m o ."]
    words = [5, 4, 23, 35]
    whole, rank0, rank1 = TranslationMetrics(), TranslationMetrics(), TranslationMetrics()
    whole.update(hyps, refs, words)
    rank0.update(hyps[::2], refs[::2], words[::2])
    rank1.update(hyps[1::2], refs[1::2], words[1::2])
    other = dict(rank1.named_modules())
    n_states = 0
    for name, metric in rank0.named_modules():
        if not isinstance(metric, Metric):
            continue
        for state in metric._defaults:
            mine, theirs = getattr(metric, state), getattr(other[name], state)
            assert isinstance(mine, torch.Tensor), f"{name}.{state} is not a tensor state"
            # Exactly what Metric._sync_dist does with the gathered per-rank tensors.
            setattr(metric, state, metric._reductions[state](torch.stack([mine, theirs])))
            n_states += 1
    assert n_states > 20
    expected = whole.compute()
    merged = rank0.compute()
    assert merged.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(merged[key], expected[key], msg=key)


def test_alignment_media_without_wandb(fitted, dm: TranslationDataModule) -> None:
    from attnlab.tasks.media import figure_pixels
    from attnlab.tasks.translation_media import alignment_figure

    task, _, _ = fitted
    examples = dm.fixed_examples(2)
    aligned = task.alignments([s for s, _ in examples])
    assert len(aligned) == 2
    for (src, _), (src_labels, hyp_labels, weights, _hyp) in zip(examples, aligned):
        assert [w.lstrip("\u2581") for w in src_labels] == src.split() + ["</s>"]
        assert weights.shape == (len(hyp_labels), len(src_labels))
        assert abs(float(weights.sum()) - len(hyp_labels)) < 1e-3  # each row is a distribution
        fig = alignment_figure(src_labels, hyp_labels, weights, title="t")
        assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == list(src_labels)
        pixels = figure_pixels(fig)
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.shape[2] == 3 and pixels.std() > 0


def test_media_logs_to_an_offline_wandb_run(fitted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Heat maps and the sample table reach a real (offline) W&B run; nothing raises."""
    from pytorch_lightning.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    task, trainer, _ = fitted
    logger = WandbLogger(project="attnlab-tests", save_dir=str(tmp_path), offline=True)
    try:
        task.val_samples = [("src one .", "ref one .", "hyp one .", 2)]
        task.log_media([logger])
        run_dir = Path(logger.experiment.dir).parent
    finally:
        import wandb

        wandb.finish()
    media = list(run_dir.rglob("*.png"))
    tables = list(run_dir.rglob("*.table.json"))
    assert len(media) == task.hparams.n_media_examples, list(run_dir.rglob("*"))
    assert len(tables) == 1


def _load_translate_script():
    spec = importlib.util.spec_from_file_location("translate_script", REPO / "scripts" / "translate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_translate_script_on_a_checkpoint(fitted, dm: TranslationDataModule, tmp_path: Path) -> None:
    """The real command line, in a subprocess, translates like the task it was saved from."""
    task, _, out = fitted
    sources = [s for s, _ in dm.fixed_examples(3)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "translate.py"), f"ckpt_path={out['ckpt']}", "beam_size=2", *sources],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == task.translate(sources, beam_size=2)


def test_translate_script_stdin_and_errors(
    fitted, dm: TranslationDataModule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    task, _, out = fitted
    script = _load_translate_script()
    sources = [s for s, _ in dm.fixed_examples(2)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(sources) + "\n\n"))
    assert script.main(["--ckpt_path", str(out["ckpt"]), "--beam_size", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == task.translate(sources, beam_size=1)
    # A missing checkpoint, a bad beam and a non-translation checkpoint are one clear line each.
    assert script.main([f"ckpt_path={tmp_path / 'nope.ckpt'}", "a sentence ."]) == 2
    err = capsys.readouterr().err
    assert "checkpoint not found" in err and "nope.ckpt" in err
    assert script.main([f"ckpt_path={out['ckpt']}", "beam_size=0", "a ."]) == 2
    assert "beam_size" in capsys.readouterr().err
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint")
    assert script.main([f"ckpt_path={junk}", "a ."]) == 2
    assert "cannot load" in capsys.readouterr().err


def test_task_decoding_uses_the_configured_cap(dm: TranslationDataModule) -> None:
    """Row 8: one 10,000-word line decodes at most model.max_decode_len tokens (default from the config)."""
    assert yaml.safe_load((CONF / "model" / "seq2seq_attn.yaml").read_text())["max_decode_len"] == 256
    task = make_task(dm, max_decode_len=12).eval()
    with torch.no_grad():
        task.model.decoder.out.bias[dm.model_kwargs()["eos_id"]] = -1e4  # only the cap can stop it
    batch = task.encode_sources([" ".join(["the"] * 10_000), "the dog ."])
    for beam in (1, 2):
        hyp = task.decode(batch, beam_size=beam)
        assert hyp.tokens.size(1) == 12 and int(hyp.lengths[0]) == 12, beam
    assert len(task.translate([" ".join(["the"] * 10_000)], beam_size=2)[0].split()) <= 12
