"""Resuming a run from its checkpoint continues *that* run, not a new one.

``python train.py ckpt_path=<run>/checkpoints/last.ckpt`` re-applies the original run's overrides
(from ``<run>/.hydra/overrides.yaml``; anything given again on the command line wins) and writes into
the same run directory, where ``wandb_id.txt`` makes the W&B logger continue the same W&B run.
Lightning restores epochs, optimizer and LR-scheduler state from the checkpoint.

``overrides.yaml`` is read as untrusted input: anything but plain ``key=value`` task overrides (an
override of Hydra itself, a ``_target_`` outside the allow-list of
:mod:`attnlab.runs.trusted_targets`) is refused with an error naming the file.
"""

from __future__ import annotations

from pathlib import Path


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def run_dir_of(ckpt_path: str | Path) -> Path | None:
    """``<run>/checkpoints/x.ckpt`` -> ``<run>`` when that folder is an attnlab/Hydra run directory."""
    run_dir = Path(ckpt_path).resolve().parent.parent
    return run_dir if (run_dir / ".hydra" / "overrides.yaml").is_file() else None


def resume_argv(argv: list[str]) -> list[str]:
    """Command-line arguments (without the program name) completed for a resume; unchanged otherwise."""
    if any(a in ("-m", "--multirun") for a in argv) or any(a.startswith("--") for a in argv):
        return argv
    ckpt = next((a.split("=", 1)[1] for a in argv if a.startswith("ckpt_path=")), None)
    if not ckpt or not Path(ckpt).is_file():
        return argv
    run_dir = run_dir_of(ckpt)
    if run_dir is None:
        return argv
    import yaml

    from attnlab.errors import ConfigError
    from attnlab.runs.trusted_targets import check_overrides

    path = run_dir / ".hydra" / "overrides.yaml"
    original = yaml.safe_load(path.read_text()) or []
    if not isinstance(original, list):
        raise ConfigError(f"{path} is not a list of overrides; the file looks edited.")
    original = check_overrides(original, str(path))
    given = {_key(a) for a in argv if "=" in a}
    kept = [o for o in original if _key(o) not in given and _key(o) != "ckpt_path"]
    extra = [] if "hydra.run.dir" in given else [f"hydra.run.dir={run_dir}"]
    return argv + kept + extra
