"""What a run is called and tagged with, derived from the config and Hydra's choices.

The run name is ``<task>-<attention>`` plus the overrides that tell this run apart, kept short
(at most :data:`MAX_NAME_LENGTH` characters) because it is a W&B run name and a table row:

* where the data is (``data.train_src=/data/multi30k/train.de``, ``data.format``, TSV columns ...)
  is left out: the data choice is a tag, and every run of a comparison reads the same files;
  other paths show their base name;
* in a multirun, overrides given one value for the whole sweep are left out (they are the same for
  every job); swept and sampled ones stay (``translation-dot_seed=2``);
* keys show their last part (``lr=0.001`` for ``model.optimizer.lr``) unless two would read alike;
* a name still too long is cut and ends with a short hash of the full overrides, so it stays unique.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig

# Overrides already expressed in the run's base name (task and attention) or that name no experiment.
_NAME_SKIP = ("experiment", "data", "model", "attention", "debug")
MAX_NAME_LENGTH = 80


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


def sweep_constant_keys() -> set[str]:
    """In a multirun, the keys the sweep's command line gave a single value (the same for every job,
    so they tell no job apart); empty for a single run or when the sweep's record is missing."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return set()
        record = Path(str(hydra_cfg.sweep.dir)) / "multirun.yaml"
    except (ValueError, AttributeError):
        return set()
    if not record.is_file():
        return set()
    import yaml
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweep = (yaml.safe_load(record.read_text()) or {}).get("hydra", {}).get("overrides", {}).get("task") or []
    try:
        parsed = OverridesParser.create().parse_overrides([str(o) for o in sweep])
    except Exception:  # noqa: BLE001 - a name is not worth failing a run for
        return set()
    return {o.key_or_group for o in parsed if not o.is_sweep_override()}


def split_overrides(joined: str) -> list[str]:
    """Hydra's ``override_dirname`` (``a=1,b=[x,y],c='p,q'``) back into its overrides."""
    items, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(joined):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(joined[start:i])
            start = i + 1
    items.append(joined[start:])
    return [item for item in items if item]


# Data keys that say where the data is and how to read it (files, folders, format, TSV columns), even
# when the value has no slash (``data.train_src=train.de``): the same for every run of a comparison.
_DATA_SOURCE_KEYS = ("_src", "_tgt", "_tsv", "root", "_file", "_dir", "annotations", "images", "format", "_col")


def _is_path(value: str) -> bool:
    return "/" in value or "\\" in value


def name_parts(overrides: Iterable[str], constant: Iterable[str] = ()) -> list[str]:
    """The ``key=value`` parts of a run name (see the module docstring), in the given order."""
    constant = set(constant)
    kept: list[tuple[str, str]] = []
    for item in overrides:
        key, _, value = item.partition("=")
        key = key.lstrip("+~")
        if key in _NAME_SKIP or key in constant:
            continue
        if key.startswith("data.") and (_is_path(value) or key.endswith(_DATA_SOURCE_KEYS)):
            continue
        if _is_path(value):
            value = Path(value.strip("'\"").rstrip("/\\")).name
        kept.append((key, value))
    last = [key.rsplit(".", 1)[-1] for key, _ in kept]
    return [f"{short if last.count(short) == 1 else key}={value}" for (key, value), short in zip(kept, last)]


def run_name(task: str, attention: str, parts: list[str], max_length: int = MAX_NAME_LENGTH) -> str:
    """``<task>-<attention>[_<parts>]``, cut to ``max_length`` with a hash of the parts when longer."""
    name = f"{task}-{attention}" + (("_" + ",".join(parts)) if parts else "")
    if len(name) <= max_length:
        return name
    digest = hashlib.sha1(",".join(parts).encode()).hexdigest()[:8]
    return name[: max_length - len(digest) - 1] + "~" + digest


def build_run_info(cfg: DictConfig, task: str, choices: dict[str, str], overrides: str = "") -> RunInfo:
    """Name (``translation-dot_lr=0.001``, see the module docstring), tags and choices of a run.
    ``overrides`` is Hydra's ``override_dirname`` (the excluded keys already left out)."""
    attention = str(cfg.attention.kind) if cfg.get("attention") is not None else "none"
    name = run_name(task, attention, name_parts(split_overrides(overrides), sweep_constant_keys()))
    tags = [task, f"model:{choices.get('model', '?')}", f"data:{choices.get('data', '?')}", f"attention:{attention}"]
    tags += [str(t) for t in (cfg.get("tags") or []) if str(t) not in tags]
    return RunInfo(task=task, name=name, tags=tags, choices=choices)
