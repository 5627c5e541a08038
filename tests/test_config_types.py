"""A wrong-typed or out-of-range setting is one line naming the key, the value and the expected type,
before any data is loaded (issue 10, row 9)."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnlab.cli.config_check import check_config_types
from attnlab.errors import ConfigError

from .helpers import compose_train, run_script


def test_bad_value_is_one_line_before_any_data_on_the_command_line(tmp_path: Path) -> None:
    proc = run_script(
        [
            "train.py",
            "model.optimizer.lr=abc",
            "logger=[]",
            f"paths.log_dir={tmp_path}",
            f"hydra.run.dir={tmp_path / 'r'}",
        ],
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    errors = [line for line in out.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "model.optimizer.lr='abc': expected float" in errors[0], out[-3000:]
    assert "Traceback" not in out and "Data <" not in out  # nothing was loaded


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("data.batch_size=-1", "data.batch_size=-1: expected an int >= 1"),
        ("trainer.max_epochs=x", "trainer.max_epochs='x': expected int | null (Trainer argument 'max_epochs')"),
    ],
)
def test_bad_value_stops_the_run_before_any_data(
    override: str, expected: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from attnlab.cli.train import run_job

    cfg = compose_train([override, "logger=[]", "extras.print_config=false"], tmp_path)
    with caplog.at_level(logging.INFO), pytest.raises(SystemExit) as info:
        run_job(cfg)
    assert info.value.code == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and expected in errors[0] and "\n" not in errors[0], errors
    assert not any(r.getMessage().startswith("Data <") for r in caplog.records)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["model.optimizer.lr=-1"], "model.optimizer: ValueError: Invalid learning rate: -1"),
        (["model.scheduler.pct_start=abc"], "model.scheduler.pct_start='abc': expected float"),
        (["model.scheduler.pct_start=1.5"], "model.scheduler: ValueError: Expected float between 0 and 1 pct_start"),
        (["+model.optimizer.momentum=0.9"], "model.optimizer.momentum: AdamW has no argument 'momentum'"),
        (["model.beam_size=wide"], "model.beam_size='wide': expected int"),
        (["data.num_workers=-2"], "data.num_workers=-2: expected an int >= 0"),
        (["+data.batchsize=8"], "data.batchsize: TranslationDataModule has no argument 'batchsize'"),
        (["trainer.precision=1.5"], "trainer.precision=1.5: expected"),
        (["experiment=detection", "data.image_size=big"], "data.image_size='big': expected int | null"),
    ],
)
def test_config_types_in_process(overrides: list[str], expected: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        check_config_types(compose_train(overrides, tmp_path))
    assert expected in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["experiment=detection"],
        ["data=translation_files"],
        ["trainer=gpu"],
        ["trainer=ddp_cpu"],
        ["debug=limit"],
        ["debug=profiler"],
        ["trainer.devices=auto", "trainer.precision=bf16-mixed", "trainer.max_epochs=-1"],
    ],
)
def test_shipped_configs_pass_the_check(overrides: list[str], tmp_path: Path) -> None:
    check_config_types(compose_train(overrides, tmp_path))
