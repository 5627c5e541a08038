"""Resuming continues the same run: same directory, W&B run, step count and LR schedule.

Known gap (issue 4): the final metrics of 2+2 epochs do not yet equal 4 epochs straight, because on a
restart Lightning builds the first epoch's train iterator before any hook can give the seeded
sampler its epoch, so that epoch replays epoch 0's batch order.
"""

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
    # The LR schedule continued where it stopped instead of restarting its warm-up.
    assert resumed["metrics"]["train/loss_epoch"] == pytest.approx(reference["metrics"]["train/loss_epoch"], rel=0.1)
