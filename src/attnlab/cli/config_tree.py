"""Print the resolved config as a rich tree at the start of a run (``extras.print_config``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

_FIRST = ("data", "model", "attention", "trainer", "recipe", "monitor", "callbacks", "logger", "paths", "extras")


def print_config_tree(cfg: DictConfig, save_to: Path | None = None, order: Sequence[str] = _FIRST) -> None:
    """Render each top-level group as a branch of YAML; also write it to ``save_to`` if given."""
    import rich
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    keys = [k for k in order if k in cfg] + [k for k in cfg if k not in order]
    for key in keys:
        branch = tree.add(str(key), style="bold", guide_style="dim")
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        with open(save_to, "w") as fh:
            rich.print(tree, file=fh)
