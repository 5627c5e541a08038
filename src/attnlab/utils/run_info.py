"""What a run is called and tagged with, derived from the config and Hydra's choices."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

# Overrides already expressed in the run's base name (task and attention) or that name no experiment.
_NAME_SKIP = ("experiment", "data", "model", "attention", "debug")


@dataclass
class RunInfo:
    """Identity of one run: name for W&B and tables, tags, and the config group choices."""

    task: str
    name: str
    tags: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)


def hydra_choices() -> dict[str, str]:
    """Hydra's runtime group choices (``data``, ``model``, ``attention``...), or ``{}`` outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig

        choices = HydraConfig.get().runtime.choices
    except ValueError:
        return {}
    return {k: str(v) for k, v in choices.items() if not k.startswith("hydra") and v is not None}


def hydra_override_dirname() -> str:
    try:
        from hydra.core.hydra_config import HydraConfig

        return str(HydraConfig.get().job.override_dirname or "")
    except (ValueError, AttributeError):
        return ""


def build_run_info(cfg: DictConfig, task: str, choices: dict[str, str], overrides: str = "") -> RunInfo:
    """Name = ``<task>-<attention>`` plus the remaining overrides (e.g. ``translation-dot_model.net.hidden_dim=128``)."""
    attention = str(cfg.attention.kind) if cfg.get("attention") is not None else "none"
    extra = [o for o in overrides.split(",") if o and o.split("=")[0].lstrip("+~") not in _NAME_SKIP]
    name = f"{task}-{attention}" + (("_" + ",".join(extra)) if extra else "")
    tags = [task, f"model:{choices.get('model', '?')}", f"data:{choices.get('data', '?')}", f"attention:{attention}"]
    tags += [str(t) for t in (cfg.get("tags") or []) if str(t) not in tags]
    return RunInfo(task=task, name=name, tags=tags, choices=choices)
