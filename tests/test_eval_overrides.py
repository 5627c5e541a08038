"""eval.py takes the task overrides train.py takes, checked against the checkpoint (issue 10, row 12).

Evaluated in-process with the real eval config composed by Hydra (as ``eval.py`` composes it);
``test_train_cli.py::test_detection_train_script_then_eval`` runs ``eval.py model=cnn_attn data=coco``
on a detection checkpoint from the command line.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import DictConfig

from attnlab.cli.eval import evaluate
from attnlab.errors import ConfigError

from .helpers import compose_app, run_script


def compose_eval(overrides: list[str], tmp_path: Path) -> DictConfig:
    """Compose ``eval.yaml`` as ``eval.py`` would (HydraConfig set, so choices and overrides are known)."""
    return compose_app("eval", [f"paths.log_dir={tmp_path / 'logs'}", *overrides], tmp_path / "eval")


def _n_test(metrics: dict) -> float:
    """Sentences scored: the per-length-bucket counts add up to the split's size."""
    return sum(v for k, v in metrics.items() if k.startswith("test/n_len_") and not k.endswith("gt20"))


@pytest.mark.usefixtures("one_torch_thread")
def test_matching_task_overrides_are_accepted_and_data_overrides_apply(
    tiny_translation_ckpt: Path, tmp_path: Path
) -> None:
    ckpt = f"ckpt_path={tiny_translation_ckpt}"
    base = evaluate(compose_eval([ckpt], tmp_path))
    assert _n_test(base) == 24
    same = evaluate(compose_eval([ckpt, "model=seq2seq_attn", "data=translation", "attention=additive"], tmp_path))
    assert same["test/loss"] == pytest.approx(base["test/loss"])
    # A data override applies on top of the run's own data config (here: a smaller test split).
    smaller = evaluate(compose_eval([ckpt, "experiment=translation", "data.n_test=8"], tmp_path))
    assert _n_test(smaller) == 8
    # Decoding settings of the model apply too.
    greedy = evaluate(compose_eval([ckpt, "+model.beam_size=1", "+model.max_decode_len=3"], tmp_path))
    assert greedy["test/loss"] == pytest.approx(base["test/loss"]) and "test/bleu" in greedy


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["model=cnn_attn"], ["model=cnn_attn (detection", "model=seq2seq_attn (translation"]),
        (["model=cnn_attn", "data=coco"], ["model=cnn_attn", "data=coco (detection", "model=seq2seq_attn"]),
        (["experiment=detection"], ["(from experiment=detection)", "model=seq2seq_attn"]),
        (["attention=dot"], ["attention=dot", "attention=additive"]),
        (["attention=additive", "attention.hidden_dim=8"], ["attention.hidden_dim"]),
        (["model=seq2seq_attn", "model.net.hidden_dim=8"], ["model.net.hidden_dim", "model.beam_size"]),
    ],
)
def test_contradicting_the_checkpoint_is_an_error_naming_both(
    overrides: list[str], named: list[str], tiny_translation_ckpt: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError) as info:
        evaluate(compose_eval([f"ckpt_path={tiny_translation_ckpt}", *overrides], tmp_path))
    for text in named:
        assert text in str(info.value), (text, str(info.value))


def test_eval_command_line_names_both_models(tiny_translation_ckpt: Path, tmp_path: Path) -> None:
    proc = run_script(
        [
            "eval.py",
            "model=cnn_attn",
            "data=coco",
            f"ckpt_path={tiny_translation_ckpt}",
            f"paths.log_dir={tmp_path}",
            f"hydra.run.dir={tmp_path / 'e'}",
        ],
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Could not override" not in out, out[-3000:]
    assert "model=cnn_attn" in out and "model=seq2seq_attn" in out and "Traceback" not in out, out[-3000:]
