"""Runs never share a folder or a W&B id (issue 10, row 2)."""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from attnlab.runs import run_dir as run_dir_module
from attnlab.runs.metrics_file import write_metrics_file
from attnlab.runs.run_dir import claim_unique_dir, is_resume, wandb_id_for_run

from .helpers import CONF, TINY_TRANSLATION, start_script


def _claim(base: str, barrier, out) -> None:
    barrier.wait()
    out.put(claim_unique_dir(base))


def test_folders_claimed_in_the_same_instant_are_distinct(tmp_path: Path) -> None:
    base = str(tmp_path / "runs" / "2025-01-01_12-00-00")
    ctx = mp.get_context("fork")
    barrier, out = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_claim, args=(base, barrier, out)) for _ in range(3)]
    for p in procs:
        p.start()
    paths = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert len(set(paths)) == 3 and all(Path(p).is_dir() for p in paths)
    assert all(Path(p).name.startswith("2025-01-01_12-00-00_") for p in paths)


def test_an_existing_folder_is_never_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    letters = iter("aaaa" + "aaaa" + "bbbb")
    monkeypatch.setattr(run_dir_module.secrets, "choice", lambda _: next(letters))
    monkeypatch.setattr(run_dir_module.time, "time", lambda: 1_700_000_000.123)
    monkeypatch.setattr(run_dir_module, "_CLAIMED", {})
    taken = tmp_path / "x_123-aaaa"
    taken.mkdir()
    (taken / "metrics.json").write_text("{}")
    path = claim_unique_dir(str(tmp_path / "x"))
    assert path == str(tmp_path / "x_123-bbbb")  # exist_ok=False: a new name, not the taken folder
    assert claim_unique_dir(str(tmp_path / "x")) == path  # one folder per process, however often resolved


def test_hydra_run_and_sweep_dirs_are_claimed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import attnlab.cli.train  # noqa: F401 - registers the resolver, as train.py does

    monkeypatch.setattr(run_dir_module, "_CLAIMED", {})
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"paths.log_dir={tmp_path}"], return_hydra_config=True)
    run, sweep = str(cfg.hydra.run.dir), str(cfg.hydra.sweep.dir)
    assert Path(run).is_dir() and Path(run).parent == tmp_path / "train" / "runs"
    assert Path(sweep).is_dir() and Path(sweep).parent == tmp_path / "train" / "multiruns"
    assert str(cfg.hydra.run.dir) == run  # resolved again: the same folder, no second one
    assert len(list((tmp_path / "train" / "runs").iterdir())) == 1


def test_wandb_id_is_reused_only_when_resuming(tmp_path: Path) -> None:
    run = tmp_path / "run"
    first = wandb_id_for_run(run, resuming=False)
    assert (run / "wandb_id.txt").read_text().strip() == first
    assert wandb_id_for_run(run, resuming=True) == first
    second = wandb_id_for_run(run, resuming=False)  # a new run in an old folder is a new W&B run
    assert second != first and (run / "wandb_id.txt").read_text().strip() == second
    assert is_resume(run / "checkpoints" / "last.ckpt", run)
    assert not is_resume(tmp_path / "other" / "checkpoints" / "last.ckpt", run) and not is_resume(None, run)


_WRITER = """
import sys
from attnlab.runs.metrics_file import write_metrics_file
for i in range(300):
    write_metrics_file(sys.argv[1], {"writer": sys.argv[2], "i": i, "pad": "x" * 5000})
"""


def test_concurrent_metrics_writers_never_collide(tmp_path: Path) -> None:
    """Each writer has its own temporary file: no writer fails, the file is always whole JSON."""
    write_metrics_file(tmp_path, {"writer": "start"})
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(k)], stderr=subprocess.PIPE, text=True)
        for k in range(2)
    ]
    reads = 0
    while any(p.poll() is None for p in procs):
        json.loads((tmp_path / "metrics.json").read_text())
        reads += 1
    errors = [p.communicate()[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert reads > 0 and json.loads((tmp_path / "metrics.json").read_text())["i"] == 299
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_three_runs_started_at_once_get_three_folders_ids_and_records(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    common = [
        "train.py",
        "debug=limit",
        "trainer.max_epochs=1",
        "test=false",
        "extras.print_config=false",
        "callbacks.rich_progress_bar=null",
        "torch_threads=1",
        f"paths.log_dir={logs}",
        *TINY_TRANSLATION,
    ]
    procs = [start_script([*common, f"seed={seed}"]) for seed in (1, 2, 3)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [o[-2000:] for o in outs]
    folders = sorted((logs / "train" / "runs").iterdir())
    assert len(folders) == 3
    records = [json.loads((f / "metrics.json").read_text()) for f in folders]
    seeds = [yaml.safe_load((f / ".hydra" / "overrides.yaml").read_text()) for f in folders]
    for folder, record, overrides in zip(folders, records, seeds):
        seed = next(int(o.split("=")[1]) for o in overrides if o.startswith("seed="))
        assert record["status"] == "ok" and record["hparams"]["seed"] == seed
        assert record["wandb"]["id"] == (folder / "wandb_id.txt").read_text().strip()
        assert [p.name for p in (folder / "checkpoints").iterdir()].count("last.ckpt") == 1
    assert sorted(r["hparams"]["seed"] for r in records) == [1, 2, 3]
    assert len({r["wandb"]["id"] for r in records}) == 3
    assert len(list((logs / "wandb").glob("offline-run-*"))) == 3
