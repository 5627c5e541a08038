"""Resuming continues the same run: same directory, W&B run, step count and LR schedule, and
(deterministic mode, same seed) 2 + 2 epochs end with the same metrics as 4 epochs straight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import TINY_TRANSLATION, run_script

COMMON = [
    *TINY_TRANSLATION, "trainer.max_epochs=4", "trainer.limit_train_batches=4", "trainer.limit_val_batches=1",
    "trainer.deterministic=true", "test=false", "extras.print_config=false", "callbacks.rich_progress_bar=null",
]


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_stop_and_resume_matches_straight_run(tmp_path: Path) -> None:
    logs = f"paths.log_dir={tmp_path / 'logs'}"
    straight, split = tmp_path / "straight", tmp_path / "split"
    proc = run_script(["train.py", *COMMON, logs, f"hydra.run.dir={straight}"])
    assert proc.returncode == 0, proc.stderr[-3000:]

    proc = run_script(["train.py", *COMMON, logs, "stop_after_epochs=2", f"hydra.run.dir={split}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = _metrics(split)
    assert first["epochs"] == 2 and first["global_step"] == 8
    wandb_id = (split / "wandb_id.txt").read_text().strip()

    # Only the checkpoint is given: the original overrides and run directory come back by themselves.
    proc = run_script(["train.py", f"ckpt_path={split / 'checkpoints' / 'last.ckpt'}", "stop_after_epochs=null"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed, reference = _metrics(split), _metrics(straight)
    assert resumed["global_step"] == reference["global_step"] == 16
    assert resumed["wandb"]["id"] == wandb_id == first["wandb"]["id"]
    assert resumed["choices"]["attention"] == "additive"
    assert resumed["epochs"] == reference["epochs"] == 4
    # Same batches, dropout masks and LR schedule as the straight run, so the same numbers: a
    # replayed epoch-0 order or a restarted warm-up would move these in the first digits.
    compared = [k for k in reference["metrics"] if k.startswith(("train/loss", "val/"))]
    assert {"train/loss_epoch", "val/loss", "val/bleu"} <= set(compared), sorted(reference["metrics"])
    for key in compared:
        assert resumed["metrics"][key] == pytest.approx(reference["metrics"][key], rel=1e-5, abs=1e-6), key
