"""Checks that a composed config can work at all, run before anything heavy is imported."""

from __future__ import annotations

from omegaconf import DictConfig

from attnlab.errors import ConfigError

# Which option of each group serves which task, for the error message's suggested fix.
_TASK_DEFAULTS = {
    "translation": {"data": "translation", "model": "seq2seq_attn", "experiment": "translation"},
    "detection": {"data": "coco", "model": "cnn_attn", "experiment": "detection"},
}


def check_task_compatibility(cfg: DictConfig, choices: dict[str, str] | None = None) -> str:
    """Return the task shared by ``cfg.data`` and ``cfg.model``, or raise :class:`ConfigError`.

    ``choices`` are Hydra's runtime choices (``data``/``model`` option names) used in the message.
    """
    choices = choices or {}
    data_task = cfg.get("data", {}).get("task") if cfg.get("data") is not None else None
    model_task = cfg.get("model", {}).get("task") if cfg.get("model") is not None else None
    data_name = choices.get("data", "?")
    model_name = choices.get("model", "?")
    if data_task is None or model_task is None:
        missing = "data" if data_task is None else "model"
        raise ConfigError(
            f"The {missing} config ({missing}={choices.get(missing, '?')}) does not declare its `task`. "
            f"Add `task: translation` or `task: detection` to conf/{missing}/<option>.yaml."
        )
    if data_task != model_task:
        fix_for_model = _TASK_DEFAULTS.get(model_task, {})
        fix_for_data = _TASK_DEFAULTS.get(data_task, {})
        raise ConfigError(
            f"model={model_name} is a {model_task} model but data={data_name} is {data_task} data. "
            f"Use data={fix_for_model.get('data', '?')} with model={model_name}, "
            f"or model={fix_for_data.get('model', '?')} with data={data_name} "
            f"(or pick a whole task: experiment={fix_for_model.get('experiment', '?')})."
        )
    return str(data_task)
