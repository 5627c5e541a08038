"""``--help`` for ``train.py`` and ``eval.py`` in about a third of a second.

Hydra's own ``--help`` lists the config groups through its config loader, which deep-copies its
whole config repository for every group and option: about 0.8 s on a 2-core machine for this tree,
more than composing the config itself. The groups are plain folders of YAML files, so they are
read from the file system here, and the config is composed with ``hydra.compose`` as Hydra would
show it. Hydra's help stays one flag away (``--hydra-help``), and anything this help cannot
compose (a sweep list such as ``attention=dot,general``) falls back to Hydra's.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

HELP_FLAGS = ("--help", "-h")

# Folders of conf/ that are not Hydra config groups of the application: Hydra's own settings
# (listed by --hydra-help) and W&B Sweeps specs, which `wandb sweep` reads, not Hydra.
NOT_GROUPS = ("hydra", "wandb_sweep")

USAGE = {
    "train": """\
Usage:
  python train.py [group=option ...] [key=value ...]          one run
  python train.py model=cnn_attn data=coco                    detection with attention over feature-map positions
  python train.py -m experiment=translation,detection attention=additive,dot,general,multihead,none
                                                              a sweep: one job (and one W&B run) per combination
  python train.py ckpt_path=<run dir>/checkpoints/last.ckpt   resume a run where it stopped
  python train.py ... --cfg job                               print the composed config and exit
  python scripts/compare_runs.py logs/train/multiruns/<sweep> compare the runs of a sweep""",
    "eval": """\
Usage:
  python eval.py ckpt_path=<run dir>/checkpoints/best.ckpt    score a checkpoint on the test split of its data
  python eval.py ckpt_path=... model=cnn_attn data=coco       the task groups train.py takes (checked against the checkpoint)
  python eval.py ckpt_path=... data=coco data.<key>=<value>   ... with some data settings changed (another test split)
  python eval.py ckpt_path=... +data.<key>=<value>            the same without naming the data option""",
}


def config_groups(conf_dir: Path) -> dict[str, list[str]]:
    """``{"group": [options]}`` for every folder of YAML files under ``conf_dir`` (nested groups as ``a/b``)."""
    groups: dict[str, list[str]] = {}
    for folder in sorted(p for p in conf_dir.rglob("*") if p.is_dir()):
        name = folder.relative_to(conf_dir).as_posix()
        if name.split("/")[0] in NOT_GROUPS:
            continue
        options = sorted(p.stem for p in folder.glob("*.yaml"))
        if options:
            groups[name] = options
    return groups


def render_help(config_name: str, overrides: Sequence[str], conf_dir: Path) -> str:
    """The help text: usage, config groups and the composed (unresolved) config."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir), job_name=config_name):
        cfg = compose(config_name=config_name, overrides=list(overrides))
    groups = "\n".join(f"{group}: {', '.join(options)}" for group, options in config_groups(conf_dir).items())
    return "\n".join(
        [
            f"attnlab {config_name}: one attention block, swept across translation and detection.",
            "",
            USAGE.get(config_name, ""),
            "",
            "== Configuration groups ==",
            "Compose your configuration from those groups (group=option)",
            "",
            groups,
            "",
            "== Config ==",
            "Override anything in the config (foo.bar=value)",
            "",
            OmegaConf.to_yaml(cfg, resolve=False),
            "Hydra's own options (launchers, sweepers, logging): --hydra-help",
        ]
    )


def print_fast_help(config_name: str, argv: Sequence[str], conf_dir: Path) -> bool:
    """Print the help and return True when ``argv`` asks for it (and it can be composed);
    return False to let Hydra handle ``argv``."""
    if not any(flag in argv for flag in HELP_FLAGS) or "--hydra-help" in argv:
        return False
    overrides = [a for a in argv if a not in HELP_FLAGS and a not in ("-m", "--multirun")]
    if any(a.startswith("-") for a in overrides):
        return False  # other Hydra flags (--config-dir, -cn, ...): Hydra knows what they mean
    try:
        text = render_help(config_name, overrides, conf_dir)
    except Exception:  # noqa: BLE001 - e.g. sweep syntax; Hydra's help handles (or reports) it
        return False
    print(text)
    return True
