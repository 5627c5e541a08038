"""Every option of every config group composes through Hydra, and the composed configs make sense."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf, open_dict

from attnlab.cli.task_check import check_task_compatibility
from attnlab.errors import ConfigError

from .conftest import CONF

GROUPS_WITH_TASK = {"data", "model"}
TRANSLATION = ["data=translation", "model=seq2seq_attn"]
DETECTION = ["data=coco", "model=cnn_attn"]


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(overrides: list[str], config_name: str = "train"):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    return cfg


def _resolve(cfg) -> dict:
    """Resolve everything except Hydra's runtime-only interpolations (output dir)."""
    with open_dict(cfg):
        cfg.paths.output_dir = "/tmp/attnlab-test-out"
        cfg.paths.work_dir = "/tmp"
        del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True)


def test_default_is_translation_additive_cpu() -> None:
    cfg = _compose([])
    assert cfg.data.task == "translation" and cfg.model.task == "translation"
    assert cfg.attention.kind == "additive"
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.monitor.metric == "val/bleu"
    assert cfg.hydra.runtime.choices.recipe == "seq2seq_attn"
    _resolve(cfg)


@pytest.mark.parametrize(
    "group", ["attention", "trainer", "logger", "callbacks", "debug", "experiment", "extras", "paths"]
)
def test_every_option_composes(group: str) -> None:
    options = _options(group)
    assert options, f"conf/{group} is empty"
    for option in options:
        cfg = _compose([f"{group}={option}"])
        resolved = _resolve(cfg)
        assert resolved["data"]["task"] == resolved["model"]["task"], (group, option)


@pytest.mark.parametrize("attention", ["additive", "dot", "general", "multihead", "none"])
@pytest.mark.parametrize("pair", [TRANSLATION, DETECTION])
def test_every_attention_with_every_task(attention: str, pair: list[str]) -> None:
    cfg = _compose(pair + [f"attention={attention}"])
    assert cfg.attention.kind == attention
    assert check_task_compatibility(cfg) == cfg.model.task
    # The logger groups runs by attention kind so that W&B panels compare kinds.
    assert cfg.logger.wandb.group == attention


def test_every_data_and_model_option_declares_a_task() -> None:
    for group in GROUPS_WITH_TASK:
        for option in _options(group):
            node = OmegaConf.load(CONF / group / f"{option}.yaml")
            assert node.get("task") in ("translation", "detection"), f"conf/{group}/{option}.yaml has no task"


def test_detection_recipe_follows_the_model() -> None:
    cfg = _compose(DETECTION)
    assert cfg.hydra.runtime.choices.recipe == "cnn_attn"
    assert cfg.monitor.metric.startswith("val/map")
    experiment = _compose(["experiment=detection"])
    assert experiment.model._target_ == cfg.model._target_
    assert experiment.monitor.metric == cfg.monitor.metric


def test_mismatched_model_and_data_names_both_and_the_fix() -> None:
    cfg = _compose(["model=cnn_attn", "data=translation"])
    with pytest.raises(ConfigError) as err:
        check_task_compatibility(cfg, {"model": "cnn_attn", "data": "translation"})
    message = str(err.value)
    assert "model=cnn_attn" in message and "data=translation" in message
    assert "data=coco" in message and "model=seq2seq_attn" in message


def test_eval_config_composes() -> None:
    cfg = _compose(["ckpt_path=/x.ckpt", "+data.batch_size=3"], config_name="eval")
    assert cfg.ckpt_path == "/x.ckpt" and cfg.split == "test" and cfg.data.batch_size == 3


def test_debug_limit_keeps_logging_for_smoke_sweeps() -> None:
    cfg = _compose(["debug=limit"])
    assert cfg.trainer.limit_train_batches and cfg.trainer.max_epochs <= 2
    assert "wandb" in cfg.logger and cfg.callbacks.model_checkpoint is not None


def test_trainer_hardware_options() -> None:
    assert _compose(["trainer=gpu"]).trainer.accelerator == "gpu"
    ddp_cpu = _compose(["trainer=ddp_cpu"]).trainer
    assert ddp_cpu.strategy == "ddp_spawn" and ddp_cpu.devices == 2 and ddp_cpu.accelerator == "cpu"
    assert _compose(["trainer=ddp"]).trainer.strategy == "ddp"


def test_unknown_option_is_a_clear_hydra_error() -> None:
    from hydra.errors import ConfigCompositionException, MissingConfigException

    with pytest.raises((MissingConfigException, ConfigCompositionException)) as err:
        _compose(["attention=bogus"])
    assert "bogus" in str(err.value)
