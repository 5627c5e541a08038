"""Multirun sweeps as users run them: failures recorded, launchers, Optuna resume, 2-process DDP on CPU."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from .helpers import TINY_DETECTION, TINY_TRANSLATION, run_script

QUIET = ["extras.print_config=false", "callbacks.rich_progress_bar=null"]


def _jobs(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/metrics.json"))]


@pytest.mark.slow
def test_sweep_goes_on_after_a_failing_job_and_summarises(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_script(
        [
            "train.py",
            "-m",
            "debug=limit",
            *TINY_TRANSLATION,
            *QUIET,
            "attention=additive,none",
            "model.optimizer.lr=0.001,-1",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = _jobs(sweep)
    assert len(jobs) == 4
    failed = [j for j in jobs if j["status"] == "failed"]
    assert len(failed) == 2 and all("learning rate" in j["error"].lower() for j in failed)
    ok = [j for j in jobs if j["status"] == "ok"]
    assert {j["choices"]["attention"] for j in ok} == {"additive", "none"}
    assert all(j["metrics"]["test/bleu"] is not None for j in ok)
    # One finished W&B run per job, never one run shared by the jobs.
    assert len({j["wandb"]["id"] for j in jobs if j.get("wandb")}) == len([j for j in jobs if j.get("wandb")])
    assert "2 ok, 2 failed" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_submitit_local_two_job_sweep(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    proc = run_script(
        [
            "train.py",
            "-m",
            "hydra/launcher=submitit_local",
            "debug=limit",
            *TINY_TRANSLATION,
            *QUIET,
            "attention=dot,general",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"hydra.sweep.dir={sweep}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = _jobs(sweep)
    assert sorted(j["choices"]["attention"] for j in jobs) == ["dot", "general"]
    assert all(j["status"] == "ok" for j in jobs)


@pytest.mark.slow
def test_optuna_search_runs_and_resumes_from_its_study(tmp_path: Path) -> None:
    import optuna

    logs = tmp_path / "logs"
    common = [
        "train.py",
        "-m",
        "hparams_search=translation_optuna",
        "debug=limit",
        *TINY_TRANSLATION,
        *QUIET,
        "hydra.sweeper.n_trials=2",
        f"paths.log_dir={logs}",
    ]
    for i in range(2):
        proc = run_script([*common, f"hydra.sweep.dir={tmp_path / f'sweep{i}'}"])
        assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="translation", storage=f"sqlite:///{logs / 'optuna_translation.db'}")
    # The second invocation added its trials to the same study instead of starting over.
    assert len(study.trials) == 4
    assert all(t.value is not None for t in study.trials)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["translation", "detection"])
def test_ddp_cpu_two_processes(task: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    data = TINY_TRANSLATION if task == "translation" else TINY_DETECTION
    # Every logger at once: the CSV logger must continue its file in ddp_spawn's test-stage workers.
    proc = run_script(
        [
            "train.py",
            "trainer=ddp_cpu",
            "debug=limit",
            "trainer.devices=2",
            "logger=many",
            *data,
            *QUIET,
            "trainer.max_epochs=1",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={run_dir}",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok"
    key = "test/bleu" if task == "translation" else "test/map"
    assert record["metrics"][key] is not None
    # Both ranks' test outputs gathered into one file by rank 0; cost figures reduced over the ranks.
    from attnlab.runs.test_outputs import read_test_outputs

    outputs = read_test_outputs(run_dir)
    assert outputs is not None
    if task == "translation":
        assert len(outputs.hypotheses) == len(outputs.references) > 0 and outputs.order == "reference"
    else:
        assert len(outputs.image_ids) > 0
    assert record["metrics"]["cost/steps_per_s"] > 0 and record["metrics"]["cost/peak_rss_mb"] > 0
    # W&B logged from rank zero only: exactly one offline run.
    assert len(list((tmp_path / "logs" / "wandb").glob("offline-run-*"))) == 1
    with (run_dir / "csv" / "metrics.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert any(row.get(key) for row in rows), "test metric missing from metrics.csv"
    assert any(row.get("train/loss_step") or row.get("train/loss") for row in rows), rows[0].keys()


@pytest.mark.slow
def test_readme_seed_sweep_compares_at_the_end_and_with_compare_runs(tmp_path: Path) -> None:
    """The README's seed sweep (2 kinds x 2 seeds x both tasks here, debug=limit): every job keeps its
    test outputs and cost, the sweep ends with the comparison (tables, significance, a compare W&B
    run), and compare_runs.py gives the same comparison from the folder."""
    from .helpers import inspect_wandb_run

    sweep, logs = tmp_path / "sweep", tmp_path / "logs"
    proc = run_script(
        [
            "train.py",
            "-m",
            "experiment=translation,detection",
            "attention=additive,none",
            "seed=1,2",
            "debug=limit",
            "torch_threads=1",
            *QUIET,
            f"paths.log_dir={logs}",
            f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.sweep.dir={sweep}",
        ],
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = _jobs(sweep)
    assert len(jobs) == 8 and all(j["status"] == "ok" for j in jobs)
    assert sorted(j["run_name"] for j in jobs) == sorted(
        f"{task}-{kind}_seed={seed}"
        for task in ("translation", "detection")
        for kind in ("additive", "none")
        for seed in (1, 2)
    )
    assert all((sweep / str(i) / "test_outputs" / "outputs.json").is_file() for i in range(8))
    assert all(j["metrics"]["cost/params_attention"] == 0 for j in jobs if j["choices"]["attention"] == "none")
    out = proc.stdout + proc.stderr
    assert out.count(" vs none: ") == 2 and (sweep / "comparison" / "comparison.md").is_file()
    compare_runs = [inspect_wandb_run(d) for d in (logs / "wandb").glob("offline-run-*")]
    assert [r["job_type"] for r in compare_runs].count("compare") == 1 and len(compare_runs) == 9

    proc = run_script(
        [
            "scripts/compare_runs.py",
            str(sweep),
            "--baseline",
            "attention=none",
            "--out",
            str(tmp_path / "cmp"),
            "--no-wandb-run",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "translation: runs that differ only in seed" in proc.stdout
    assert "detection: runs that differ only in seed" in proc.stdout
    lines = [line for line in proc.stdout.splitlines() if " vs none: " in line]
    assert len(lines) == 2 and all("paired by seed" in line for line in lines), lines
    for name in (
        "comparison.md",
        "comparison.csv",
        "aggregated.csv",
        "significance.csv",
        "main_metric_by_attention.png",
        "quality_vs_cost_translation.png",
        "quality_vs_cost_detection.png",
    ):
        assert (tmp_path / "cmp" / name).is_file(), name


def _enqueue(storage: str, lrs: list[float]) -> None:
    """Pre-create the study with the trials to run first (a documented Optuna feature), so that
    exactly the trial with lr=-1 fails, whatever the sampler would have drawn."""
    import optuna

    study = optuna.create_study(study_name="translation", storage=storage, direction="maximize")
    for lr in lrs:
        study.enqueue_trial(
            {
                "attention": "dot",
                "model.optimizer.lr": lr,
                "model.net.hidden_dim": 128,
                "model.net.emb_dim": 64,
                "model.net.dropout": 0.1,
            }
        )


@pytest.mark.slow
def test_optuna_records_a_failing_trial_as_failed_and_goes_on_then_retries_it(tmp_path: Path) -> None:
    """Rows 11 and 13: a 4-trial study with no logger (default callbacks) and one failing trial."""
    import optuna

    logs = tmp_path / "logs"
    storage = f"sqlite:///{logs / 'optuna_translation.db'}"
    logs.mkdir()
    _enqueue(storage, [0.003, -1.0, 0.002, 0.001])
    # The enqueued values must lie in the search space (Optuna ignores fixed values outside it).
    common = [
        "train.py",
        "-m",
        "hparams_search=translation_optuna",
        "debug=limit",
        *TINY_TRANSLATION,
        *QUIET,
        "logger=[]",
        f"paths.log_dir={logs}",
        "model.optimizer.lr=choice(0.003,-1.0,0.002,0.001)",
    ]
    proc = run_script([*common, "hydra.sweeper.n_trials=4", f"hydra.sweep.dir={tmp_path / 's1'}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="translation", storage=storage)
    states = [t.state for t in study.trials]
    assert states.count(optuna.trial.TrialState.COMPLETE) == 3 and states.count(optuna.trial.TrialState.FAIL) == 1
    failed = next(t for t in study.trials if t.state == optuna.trial.TrialState.FAIL)
    assert failed.params["model.optimizer.lr"] == -1.0 and failed.value is None
    jobs = _jobs(tmp_path / "s1")
    bad = [j for j in jobs if j["status"] == "failed"]
    assert len(jobs) == 4 and len(bad) == 1 and "learning rate" in bad[0]["error"].lower()

    # The same command again resumes the study; failed_trials=retry runs the failed parameters first.
    proc = run_script(
        [*common, "hydra.sweeper.n_trials=1", "hydra.sweeper.failed_trials=retry", f"hydra.sweep.dir={tmp_path / 's2'}"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="translation", storage=storage)
    assert len(study.trials) == 5 and study.trials[-1].params == failed.params
    assert study.user_attrs["attnlab_retried_trials"] == [failed.number]


def test_a_nan_or_missing_value_becomes_a_failed_trial_with_its_reason(tmp_path: Path) -> None:
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from attnlab.runs.attempts import finish_attempt
    from attnlab.sweepers.failsafe_optuna import TrialFailed, fail_jobs_without_value

    def job(name: str, value, record: dict) -> JobReturn:
        out = tmp_path / name
        finish_attempt(out, {"monitor": {"metric": "val/bleu"}, **record}, None)
        ret = JobReturn(overrides=[f"job={name}"], status=JobStatus.COMPLETED, _return_value=value)
        ret.hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": str(out)}}})
        return ret

    good = job("good", 12.5, {"status": "ok"})
    nan = job("nan", float("nan"), {"status": "ok", "metrics": {"val/bleu": None}})
    crashed = job("crashed", float("nan"), {"status": "failed", "error": "ValueError: boom"})
    assert fail_jobs_without_value([good, nan, crashed]) == [nan, crashed]
    assert good.status == JobStatus.COMPLETED and good.return_value == 12.5
    with pytest.raises(TrialFailed, match="val/bleu is nan"):
        _ = nan.return_value
    with pytest.raises(TrialFailed, match="boom"):
        _ = crashed.return_value
    record = json.loads((tmp_path / "nan" / "metrics.json").read_text())
    assert record["status"] == "failed" and "failed Optuna trial" in record["error"]
    assert record["attempts"][-1]["status"] == "failed"
