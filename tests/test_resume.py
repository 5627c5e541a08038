"""Resuming continues the same run: same directory, W&B run, step count and LR schedule, and
(deterministic mode, same seed) 2 + 2 epochs end with the same metrics as 4 epochs straight."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import TINY_TRANSLATION, run_script, start_script

COMMON = [
    *TINY_TRANSLATION,
    "trainer.max_epochs=4",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=1",
    "trainer.deterministic=true",
    "test=false",
    "extras.print_config=false",
    "callbacks.rich_progress_bar=null",
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
    import signal
    import time

    run_dir = tmp_path / "run"
    args = [
        *TINY_TRANSLATION,
        "trainer.max_epochs=500",
        "test=false",
        "extras.print_config=false",
        "callbacks.rich_progress_bar=null",
        "callbacks.early_stopping=null",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"hydra.run.dir={run_dir}",
    ]
    proc = start_script(["train.py", *args])
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


QUICK = [
    *TINY_TRANSLATION,
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "logger=[]",
    "test=false",
    "extras.print_config=false",
    "callbacks.rich_progress_bar=null",
]


def test_resume_with_a_larger_budget_rebuilds_the_schedule_and_keeps_every_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Row 3: 1 epoch, then resume for 2 (OneCycleLR used to stop at the old total and the failed
    resume overwrote the first run's `ok`); then a resume that fails leaves both records intact."""
    import logging

    from attnlab.cli.train import run_job

    from .helpers import compose_train

    run_job(compose_train([*QUICK, "trainer.max_epochs=1"], tmp_path))
    run_dir = tmp_path / "run"
    first = _metrics(run_dir)
    assert first["status"] == "ok" and first["global_step"] == 3 and first["attempt"] == 1

    last = run_dir / "checkpoints" / "last.ckpt"
    with caplog.at_level(logging.WARNING):
        run_job(compose_train([*QUICK, "trainer.max_epochs=2", f"ckpt_path={last}"], tmp_path))
    assert "OneCycleLR total_steps 3 -> 6" in caplog.text
    second = _metrics(run_dir)
    assert second["status"] == "ok" and second["global_step"] == 6 and second["started_from_ckpt"] == str(last)
    assert [a["status"] for a in second["attempts"]] == ["ok", "ok"]
    assert second["attempts"][0]["metrics"] == first["metrics"] and second["attempts"][0]["global_step"] == 3

    with pytest.raises(SystemExit):
        run_job(compose_train([*QUICK, "trainer.max_epochs=3", "model.optimizer.lr=-1", f"ckpt_path={last}"], tmp_path))
    third = _metrics(run_dir)
    assert third["status"] == "failed" and "learning rate" in third["error"]
    assert [a["status"] for a in third["attempts"]] == ["ok", "ok", "failed"]
    assert third["attempts"][1]["metrics"] == second["metrics"]


def test_attempts_record_running_then_killed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import subprocess

    from attnlab.runs.attempts import finish_attempt, report_killed_runs, start_attempt

    run = tmp_path / "runs" / "a"
    attempt = start_attempt(run, {"run_name": "a"})
    assert _metrics(run)["status"] == "running" and attempt == 1
    # The process that started it dies without finishing its record (SIGKILL, OOM...).
    gone = subprocess.Popen(["true"])
    gone.wait()
    record = _metrics(run)
    record["pid"] = record["attempts"][0]["pid"] = gone.pid
    (run / "metrics.json").write_text(json.dumps(record))
    with caplog.at_level(logging.WARNING):
        assert report_killed_runs(tmp_path / "runs") == [run]
    assert "was killed while running" in caplog.text and "overrides.yaml" in caplog.text
    second = start_attempt(run, {"run_name": "a"})
    finish_attempt(run, {"status": "ok", "metrics": {"val/bleu": 1.0}}, second)
    final = _metrics(run)
    assert [a["status"] for a in final["attempts"]] == ["killed", "ok"] and final["status"] == "ok"
    assert final["attempts"][0]["started_at"] and final["attempts"][1]["ended_at"]


@pytest.mark.slow
def test_sigkill_mid_first_epoch_leaves_a_record_and_a_checkpoint_then_resumes(tmp_path: Path) -> None:
    """Row 4: a run killed outright (SIGKILL) in its first epoch; nothing recorded before is lost."""
    import signal
    import time

    logs = tmp_path / "logs"
    args = [
        *TINY_TRANSLATION,
        "data.n_train=4000",
        "trainer.max_epochs=1",
        "test=false",
        "logger=[]",
        "torch_threads=1",
        "extras.print_config=false",
        "callbacks.rich_progress_bar=null",
        "callbacks.time_checkpoint.minutes=0.03",
        f"paths.log_dir={logs}",
    ]
    proc = start_script(["train.py", *args])
    runs = logs / "train" / "runs"
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline and not list(runs.glob("*/checkpoints/last.ckpt")):
        time.sleep(0.2)
    time.sleep(0.5)  # let the checkpoint file be completely written
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    (run_dir,) = runs.iterdir()
    record = _metrics(run_dir)
    assert record["status"] == "running" and record["pid"] == proc.pid
    last = run_dir / "checkpoints" / "last.ckpt"
    import torch

    ckpt = torch.load(last, weights_only=True, map_location="cpu")
    assert ckpt["epoch"] == 0 and 0 < ckpt["global_step"] < 250  # written inside the first epoch

    # The next start (any run) says how to resume the killed one.
    nxt = run_script(
        [
            "train.py",
            *TINY_TRANSLATION,
            "train=false",
            "test=false",
            "logger=[]",
            "extras.print_config=false",
            f"paths.log_dir={logs}",
        ]
    )
    assert nxt.returncode == 0, nxt.stderr[-3000:]
    assert "was killed while running" in nxt.stdout + nxt.stderr
    assert f"python train.py ckpt_path={last}" in nxt.stdout + nxt.stderr

    resumed = run_script(["train.py", f"ckpt_path={last}"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    final = _metrics(run_dir)
    assert final["status"] == "ok" and final["global_step"] == 250
    assert [a["status"] for a in final["attempts"]] == ["killed", "ok"]
    assert final["attempts"][0]["pid"] == proc.pid and final["attempts"][0]["started_at"] == record["started_at"]
