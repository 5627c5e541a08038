"""train.py / eval.py as a user runs them: start-up, clear errors, a real run, eval of its checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnlab.cli.training import train

from .helpers import TINY_DETECTION, TINY_TRANSLATION, compose_train, run_script

_NO_TORCH = """
import runpy, sys
sys.argv = ["train.py", *{args!r}]
try:
    runpy.run_path("train.py", run_name="__main__")
except SystemExit as exc:
    print("EXIT", exc.code)
print("TORCH_IMPORTED" if "torch" in sys.modules else "NO_TORCH")
"""


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job"], ["experiment=detection", "--cfg", "job"]])
def test_help_and_cfg_job_do_not_import_torch(args: list[str]) -> None:
    proc = run_script(["-c", _NO_TORCH.format(args=args)], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "NO_TORCH" in proc.stdout, proc.stdout[-2000:]
    if "--help" in args:
        assert "attention: additive, dot, general, multihead, none" in proc.stdout
    else:
        assert "_target_: attnlab" in proc.stdout


def test_help_shows_overrides_groups_and_leaves_hydra_help_to_hydra() -> None:
    proc = run_script(["train.py", "experiment=detection", "--help"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "python train.py model=cnn_attn data=coco" in proc.stdout  # usage
    assert "trainer: cpu, ddp, ddp_cpu, default, gpu, mps" in proc.stdout  # groups from conf/
    assert "wandb_sweep" not in proc.stdout.split("== Config ==")[0]  # W&B specs are not a Hydra group
    assert "_target_: attnlab.data.coco.CocoDataModule" in proc.stdout  # the override was composed
    proc = run_script(["train.py", "--hydra-help"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "hydra/launcher:" in proc.stdout and "joblib" in proc.stdout  # Hydra's own help, with plugins
    proc = run_script(["eval.py", "--help"], timeout=120)
    assert proc.returncode == 0 and "python eval.py ckpt_path=" in proc.stdout, proc.stderr


def test_model_data_mismatch_fails_before_torch_with_the_fix() -> None:
    proc = run_script(["-c", _NO_TORCH.format(args=["model=cnn_attn", "data=translation"])], timeout=120)
    out = proc.stdout + proc.stderr
    assert "EXIT 1" in out and "NO_TORCH" in out, out[-2000:]
    assert "model=cnn_attn" in out and "data=translation" in out and "data=coco" in out


@pytest.mark.parametrize("kind", ["additive", "dot", "general", "multihead", "none"])
def test_fast_dev_run_translation_every_attention(kind: str, tmp_path: Path) -> None:
    cfg = compose_train(
        ["debug=fdr", f"attention={kind}", "logger=csv", "extras.print_config=false", *TINY_TRANSLATION], tmp_path
    )
    metrics, objects = train(cfg)
    assert objects["trainer"].state.finished
    assert metrics["train/loss"] is not None and metrics["train/loss"] > 0
    assert metrics.get("test/bleu") is not None and 0.0 <= metrics["test/bleu"] <= 100.0


@pytest.mark.parametrize("kind", ["additive", "dot", "general", "multihead", "none"])
def test_fast_dev_run_detection_every_attention(kind: str, tmp_path: Path) -> None:
    cfg = compose_train(
        ["debug=fdr", f"attention={kind}", "logger=csv", "extras.print_config=false", *TINY_DETECTION], tmp_path
    )
    metrics, objects = train(cfg)
    assert objects["trainer"].state.finished
    assert metrics["train/loss"] is not None and metrics["train/loss"] > 0
    assert metrics.get("test/map") is not None and 0.0 <= metrics["test/map"] <= 1.0
    # The generated shapes set went to the configured data dir (a folder per settings), in the COCO layout.
    assert len(list((tmp_path / "data" / "shapes_coco").glob("set-*/annotations/instances_train.json"))) == 1


def test_detection_train_script_then_eval(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    common = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}"]
    proc = run_script(
        [
            "train.py",
            "model=cnn_attn",
            "data=coco",
            "debug=limit",
            *TINY_DETECTION[1:],
            *common,
            "extras.print_config=false",
            f"hydra.run.dir={run_dir}",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok" and record["task"] == "detection"
    assert record["metrics"]["test/map_50"] is not None
    # The checkpoint train.py tested (the best one), so eval must reproduce its test figures exactly;
    # with the task overrides train.py took (row 12 of issue 10), checked against the checkpoint.
    proc = run_script(
        [
            "eval.py",
            "model=cnn_attn",
            "data=coco",
            f"ckpt_path={record['best_model_path']}",
            *common,
            f"hydra.run.dir={tmp_path / 'eval'}",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["metrics"]["test/map"] == pytest.approx(record["metrics"]["test/map"], abs=1e-6)
    # Data overrides apply on top of the run's data config: another test annotation file is used.
    proc = run_script(
        [
            "eval.py",
            "model=cnn_attn",
            "data=coco",
            f"ckpt_path={record['best_model_path']}",
            *common,
            "data.splits.test.annotations=annotations/other_test.json",
            f"hydra.run.dir={tmp_path / 'e2'}",
        ]
    )
    assert proc.returncode == 1 and "other_test.json" in proc.stdout + proc.stderr, proc.stderr[-3000:]


def test_train_script_then_eval_from_its_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_script(
        [
            "train.py",
            "debug=limit",
            *TINY_TRANSLATION,
            f"paths.log_dir={tmp_path / 'logs'}",
            f"hydra.run.dir={run_dir}",
            "tags=[cli_test]",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "ok" and record["task"] == "translation"
    assert record["choices"]["attention"] == "additive" and record["choices"]["data"] == "translation"
    assert record["metrics"]["test/bleu"] is not None
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "config_tree.log").is_file()
    # The W&B run was kept offline, finished, and named after the run.
    offline = list((tmp_path / "logs" / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and record["wandb"]["mode"] == "offline"
    assert record["wandb"]["id"] in offline[0].name

    eval_dir = tmp_path / "eval"
    proc = run_script(
        [
            "eval.py",
            f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"hydra.run.dir={eval_dir}",
        ]
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    evaluated = json.loads((eval_dir / "metrics.json").read_text())
    assert evaluated["split"] == "test" and evaluated["metrics"]["test/bleu"] is not None


def test_eval_names_a_missing_checkpoint(tmp_path: Path) -> None:
    proc = run_script(["eval.py", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"hydra.run.dir={tmp_path / 'e'}"])
    assert proc.returncode == 1
    assert "nope.ckpt does not exist" in proc.stdout + proc.stderr


@pytest.mark.parametrize("task", ["translation", "detection"])
def test_compile_option_compiles_the_hot_modules_and_keeps_checkpoint_keys(task: str, tmp_path: Path) -> None:
    # backend=eager: dynamo traces our modules (what breaks compile shows up here) without paying
    # for inductor's code generation; trainer=gpu compile.enabled=true uses inductor.
    data = TINY_TRANSLATION if task == "translation" else TINY_DETECTION
    cfg = compose_train(
        [
            "debug=fdr",
            "logger=csv",
            "extras.print_config=false",
            "compile.enabled=true",
            "compile.backend=eager",
            "compile.dynamic=true",
            *data,
        ],
        tmp_path,
    )
    metrics, objects = train(cfg)
    assert objects["trainer"].state.finished and metrics["train/loss"] > 0
    model = objects["model"]
    compiled = {name for name, m in model.named_modules() if getattr(m, "_compiled_call_impl", None) is not None}
    expected = (
        {"model.decoder.attention", "model.decoder.cells.0", "model.decoder.out"}
        if task == "translation"
        else {"net.detector.backbone"}
    )
    assert expected <= compiled, compiled
    assert not any("_orig_mod" in key for key in model.state_dict())  # checkpoints load with or without compile


@pytest.mark.parametrize("logger", ["logger=null", "logger=[]", "~logger"])
def test_no_logger_runs_with_the_default_callbacks(
    logger: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Row 13 of issue 10: Lightning's LR monitor refuses a logger-less trainer; it steps aside instead.
    ``logger=null`` (which Hydra itself refuses for a group) means ``logger=[]`` on train.py's command line."""
    import logging

    from attnlab.cli.train import no_logger_alias

    (logger,) = no_logger_alias([logger])
    from pytorch_lightning.callbacks import LearningRateMonitor

    from attnlab.callbacks.media import MediaLogger

    cfg = compose_train(["debug=fdr", logger, "extras.print_config=false", *TINY_TRANSLATION], tmp_path)
    with caplog.at_level(logging.DEBUG, logger="attnlab.cli.instantiate"):
        metrics, objects = train(cfg)
    assert objects["trainer"].state.finished and metrics["train/loss"] is not None
    assert not any(isinstance(cb, (LearningRateMonitor, MediaLogger)) for cb in objects["trainer"].callbacks)
    assert "LearningRateMonitor left out" in caplog.text and "MediaLogger left out" in caplog.text
