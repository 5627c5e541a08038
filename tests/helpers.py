"""Helpers for tests that compose the real config tree and run real training."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# Tiny but real data: a few hundred generated sentence pairs / shapes images.
TINY_TRANSLATION = [
    "data.n_train=240",
    "data.n_val=24",
    "data.n_test=24",
    "data.batch_size=16",
    "data.eval_batch_size=24",
    "data.max_len=20",
    "model.beam_size=2",
    "model.max_len_a=1.0",
    "model.max_len_b=4",
]
TINY_DETECTION = [
    "experiment=detection",
    "data.synthetic.n_train=12",
    "data.synthetic.n_val=4",
    "data.synthetic.n_test=4",
    "data.batch_size=4",
    "data.num_workers=0",
]


def compose_app(config_name: str, overrides: list[str], output_dir: Path) -> DictConfig:
    """Compose ``<config_name>.yaml`` as the app would, with outputs in ``output_dir``, and set
    HydraConfig (so Hydra's choices and the command line's overrides are known to the code)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def compose_train(overrides: list[str], tmp_path: Path) -> DictConfig:
    """Compose ``train.yaml`` as ``train.py`` would, with outputs under ``tmp_path``, and set HydraConfig."""
    paths = [f"paths.log_dir={tmp_path / 'logs'}", f"paths.data_dir={tmp_path / 'data'}"]
    return compose_app("train", [*paths, *overrides], tmp_path / "run")


def run_script(args: list[str], cwd: Path = REPO, timeout: int = 600, env: dict[str, Any] | None = None):
    """Run ``python <args>`` in a subprocess with W&B offline; return the CompletedProcess.
    ``env`` entries are added to the environment; a ``None`` value removes that variable."""
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=script_env(env)
    )


def start_script(args: list[str], cwd: Path = REPO, env: dict[str, Any] | None = None) -> subprocess.Popen:
    """Start ``python <args>`` like :func:`run_script` without waiting: stdout and stderr merged into one
    text pipe, for tests that kill or watch the process while it runs."""
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=cwd,
        env=script_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def script_env(env: dict[str, Any] | None = None) -> dict[str, str]:
    """This process's environment with W&B offline and silent and unbuffered output, plus ``env``
    (a ``None`` value removes that variable)."""
    full_env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "PYTHONUNBUFFERED": "1"}
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = str(value)
    return full_env


def inspect_wandb_run(run_dir: Path) -> dict[str, Any]:
    """An offline W&B run read back as W&B itself reads it: ``wandb leet inspect --summary --json``
    (config, summary, tags, name), plus the ``job_type`` from its run record (``--json`` stream)."""
    import json
    import shutil

    exe = shutil.which("wandb") or str(Path(sys.executable).parent / "wandb")
    proc = subprocess.run(
        [exe, "leet", "inspect", "--summary", "--json", str(run_dir)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    stream = subprocess.run(
        [exe, "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True, timeout=120
    )
    for line in stream.stdout.splitlines():
        record = json.loads(line)
        if record.get("type") == "run":
            data["job_type"] = record["run"].get("job_type")
            break
    return data
