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


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_records_the_interrupt_and_resumes(tmp_path: Path) -> None:
    """A scheduler's SIGTERM mid-training: last.ckpt is written, the run is recorded as interrupted
    (W&B run finished as preempted), and resuming from it finishes the same run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from .helpers import REPO

    run_dir = tmp_path / "run"
    args = [*TINY_TRANSLATION, "trainer.max_epochs=500", "test=false", "extras.print_config=false",
            "callbacks.rich_progress_bar=null", "callbacks.early_stopping=null", f"paths.log_dir={tmp_path / 'logs'}",
            f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "train.py", *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, "training ended before it could be interrupted"
    first_ckpt_time = last.stat().st_mtime
    time.sleep(1.0)  # now somewhere in a later epoch
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    record = _metrics(run_dir)
    assert record["status"] == "interrupted", out[-3000:]
    assert "SIGTERM" in (record["error"] or "") or "SIGTERM" in out
    assert last.stat().st_mtime > first_ckpt_time  # written at the interrupt, not just the epoch-end copy
    interrupted_step = record["global_step"]
    assert interrupted_step > 0 and record["wandb"]["id"]

    proc2 = run_script(["train.py", f"ckpt_path={last}", f"trainer.max_epochs={record['epochs'] + 2}"])
    assert proc2.returncode == 0, proc2.stderr[-3000:]
    resumed = _metrics(run_dir)
    assert resumed["status"] == "ok"
    assert resumed["wandb"]["id"] == record["wandb"]["id"]
    assert resumed["global_step"] > interrupted_step
