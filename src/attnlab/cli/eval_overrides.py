"""``eval.py`` takes the task overrides ``train.py`` takes, checked against the checkpoint.

``python eval.py ckpt_path=... model=cnn_attn data=coco`` (as lightning-hydra-template users type
it) composes those groups like ``train.py`` does. The weights, and so the model and its attention,
come from the checkpoint: a ``model=``, ``attention=``, ``data=`` or ``experiment=`` that contradicts
it is an error naming both sides. Data overrides apply on top of the data config the run trained
with (``data.splits.test.annotations=...`` to score another test split); choosing another data
option of the same task (``data=translation_files ...``) starts from that option instead. Decoding
and scoring settings of the model (``model.beam_size=10``) apply; its architecture cannot change.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from attnlab.errors import ConfigError

__all__ = ["check_task_overrides", "data_config", "model_overrides"]


def _user_overrides() -> list[tuple[str, bool]]:
    """``(key, is_delete)`` of every task override on the command line (``+``/``~`` stripped)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.core.override_parser.overrides_parser import OverridesParser

        given = list(HydraConfig.get().overrides.task)
    except ValueError:
        return []
    parsed = OverridesParser.create().parse_overrides(given)
    return [(o.key_or_group, o.is_delete()) for o in parsed]


def _describe(choices: dict[str, str], cfg: Any, group: str) -> str:
    """``model=cnn_attn (detection, attnlab.tasks.detection.DetectionTask)`` for messages."""
    node = cfg.get(group) if cfg is not None else None
    details = []
    if isinstance(node, (dict, DictConfig)):
        details = [str(node.get(k)) for k in ("task", "kind", "_target_") if node.get(k) is not None]
    shown = f"{group}={choices.get(group, '?')}"
    return shown + (f" ({', '.join(details)})" if details else "")


def check_task_overrides(
    cfg: DictConfig, choices: dict[str, str], run_cfg: dict[str, Any], run_choices: dict[str, str], ckpt: str
) -> None:
    """ConfigError when a chosen ``model``/``data``/``attention``/``experiment`` contradicts the checkpoint."""
    run_task = (run_cfg.get("model") or {}).get("task")
    via = f" (from experiment={choices['experiment']})" if choices.get("experiment") else ""
    problems = []
    if choices.get("model") and cfg.get("model") is not None:
        same = cfg.model.get("_target_") == (run_cfg.get("model") or {}).get("_target_")
        if not same or (run_choices.get("model") and choices["model"] != run_choices["model"]):
            problems.append(
                f"{_describe(choices, cfg, 'model')}{via} but the checkpoint holds "
                f"{_describe(run_choices, run_cfg, 'model')}"
            )
    if choices.get("data") and cfg.get("data") is not None and cfg.data.get("task") != run_task:
        problems.append(
            f"{_describe(choices, cfg, 'data')}{via} is {cfg.data.get('task')} data but the checkpoint "
            f"holds a {run_task} model ({_describe(run_choices, run_cfg, 'model')})"
        )
    run_kind = (run_cfg.get("attention") or {}).get("kind")
    if choices.get("attention") and cfg.get("attention") is not None and cfg.attention.get("kind") != run_kind:
        problems.append(f"attention={choices['attention']} but the checkpoint was trained with attention={run_kind}")
    for key, _ in _user_overrides():
        if key.startswith("attention."):
            problems.append(f"{key}: the attention settings come from the checkpoint's weights")
    if problems:
        raise ConfigError(
            f"{ckpt}: " + "; ".join(problems) + ". Drop those overrides, or pass a checkpoint of that "
            "model (the checkpoint decides the model, its attention and its task)."
        )


def data_config(
    cfg: DictConfig, choices: dict[str, str], run_cfg: dict[str, Any], run_choices: dict[str, str]
) -> DictConfig:
    """The data config to evaluate on: the run's own with the command line's ``data.*`` overrides
    applied, or, when another data option was chosen, that option as composed."""
    if choices.get("data") and choices["data"] != run_choices.get("data") and cfg.get("data") is not None:
        return cfg.data
    data = OmegaConf.create(run_cfg.get("data") or {})
    for key, is_delete in _user_overrides():
        if not key.startswith("data."):
            continue
        sub = key[len("data.") :]
        if is_delete:
            parent_key, _, leaf = sub.rpartition(".")
            parent = OmegaConf.select(data, parent_key) if parent_key else data
            if isinstance(parent, DictConfig) and leaf in parent:
                del parent[leaf]
        else:
            OmegaConf.update(data, sub, OmegaConf.select(cfg, key), force_add=True)
    return data


def model_overrides(cfg: DictConfig, task_cls: type) -> dict[str, Any]:
    """The command line's ``model.<key>=value`` overrides of the settings the task lists in
    ``EVAL_SETTINGS`` (decoding and scoring); any other ``model.*`` key is a ConfigError."""
    allowed = tuple(getattr(task_cls, "EVAL_SETTINGS", ()))
    out: dict[str, Any] = {}
    for key, is_delete in _user_overrides():
        if not key.startswith("model."):
            continue
        sub = key[len("model.") :]
        if is_delete or sub not in allowed:
            raise ConfigError(
                f"{key}: the model comes from the checkpoint; at evaluation only its decoding and scoring "
                f"settings can change ({', '.join('model.' + k for k in allowed) or 'none for this task'})."
            )
        # Wrapped in a node so that a scalar and a container resolve alike; a dict node gives a dict back.
        resolved = OmegaConf.to_container(OmegaConf.create({"v": OmegaConf.select(cfg, key)}), resolve=True)
        out[sub] = resolved["v"] if isinstance(resolved, dict) else None
    return out
