"""Loading a checkpoint never runs code from it (issue 10, row 1).

A crafted pickle whose payload creates a file is refused by every entry point that loads
checkpoints (eval.py, scripts/translate.py, train.py resume/test) and the file never appears; the
checkpoints attnlab writes load with ``torch.load(weights_only=True)``; the config a checkpoint or
run folder carries is untrusted (only allow-listed ``_target_``s); an old checkpoint gives an error
that says how to convert it, and the converter makes it load.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab.errors import ConfigError
from attnlab.runs.checkpoint_io import load_checkpoint
from attnlab.runs.trusted_targets import check_config_targets, check_overrides
from attnlab.tasks.optim_factories import config_to_factory, factory_to_config

from .helpers import REPO, TINY_TRANSLATION, run_script


class _Payload:
    """Unpickling this runs ``touch <marker>``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted(tmp_path: Path, zip_format: bool) -> tuple[Path, Path]:
    """A checkpoint-looking file whose unpickling creates ``marker``; returns (file, marker)."""
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / ("crafted_zip.ckpt" if zip_format else "crafted.ckpt")
    content = {"state_dict": {}, "hyper_parameters": {"x": _Payload(marker)}}
    if zip_format:
        torch.save(content, path)
    else:
        path.write_bytes(pickle.dumps(content))
    assert not marker.exists()
    return path, marker


@pytest.mark.parametrize("zip_format", [False, True], ids=["raw_pickle", "torch_save"])
def test_load_checkpoint_refuses_a_crafted_pickle_without_running_it(tmp_path: Path, zip_format: bool) -> None:
    path, marker = _crafted(tmp_path, zip_format)
    with pytest.raises(ConfigError) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("entry", ["eval", "translate", "train_resume"])
def test_every_entry_point_refuses_a_crafted_checkpoint(tmp_path: Path, entry: str) -> None:
    path, marker = _crafted(tmp_path, zip_format=True)
    logs = f"paths.log_dir={tmp_path / 'logs'}"
    args = {
        "eval": ["eval.py", f"ckpt_path={path}", logs, f"hydra.run.dir={tmp_path / 'e'}"],
        "translate": [str(REPO / "scripts" / "translate.py"), f"ckpt_path={path}", "a sentence ."],
        "train_resume": [
            "train.py",
            f"ckpt_path={path}",
            logs,
            f"hydra.run.dir={tmp_path / 'r'}",
            "logger=[]",
            *TINY_TRANSLATION,
        ],
    }[entry]
    proc = run_script(args, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out[-3000:]
    assert "can be read safely" in out and "posix.system" in out, out[-3000:]
    assert not marker.exists(), "the payload ran"
    assert "Traceback" not in out, out[-3000:]


@pytest.fixture
def translation_ckpt(tiny_translation_ckpt: Path) -> Path:
    return tiny_translation_ckpt


def test_checkpoints_we_write_load_with_weights_only(translation_ckpt: Path) -> None:
    # Nothing in them needs torch.serialization.add_safe_globals (detection: test_detection_task.py).
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(translation_ckpt)) == []
    checkpoint = torch.load(translation_ckpt, weights_only=True)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["optimizer"]["_target_"] == "torch.optim.adamw.AdamW"
    assert hparams["scheduler"]["_target_"] == "torch.optim.lr_scheduler.OneCycleLR"
    assert isinstance(checkpoint["attnlab_rng_states"]["numpy"][1], torch.Tensor)
    assert hparams["src_tokenizer_json"] and hparams["tgt_tokenizer_json"]  # translate.py needs them


def test_factories_only_name_allow_listed_targets() -> None:
    assert factory_to_config(functools.partial(torch.optim.AdamW, lr=0.1, betas=(0.9, 0.98)), "optimizer") == {
        "_target_": "torch.optim.adamw.AdamW",
        "lr": 0.1,
        "betas": [0.9, 0.98],
    }
    for bad in ({"_target_": "os.system", "command": "touch x"}, functools.partial(os.system, command="touch x")):
        with pytest.raises(ConfigError, match=r"optimizer._target_='(os|posix).system'"):
            factory_to_config(bad, "optimizer")
    with pytest.raises(ConfigError, match="builtins.exec"):
        config_to_factory({"_target_": "builtins.exec"}, "scheduler")
    with pytest.raises(ValueError, match="plain data"):
        factory_to_config(functools.partial(torch.optim.AdamW, lr=torch.tensor(0.1)), "optimizer")


def test_checkpoint_config_with_a_foreign_target_is_refused_by_eval(translation_ckpt: Path, tmp_path: Path) -> None:
    checkpoint = torch.load(translation_ckpt, weights_only=True)
    marker = tmp_path / "TARGET_RAN"
    checkpoint["attnlab_config"]["config"]["data"]["extra"] = {"_target_": "os.system", "command": f"touch {marker}"}
    edited = tmp_path / "edited.ckpt"
    torch.save(checkpoint, edited)
    proc = run_script(
        ["eval.py", f"ckpt_path={edited}", f"paths.log_dir={tmp_path / 'logs'}", f"hydra.run.dir={tmp_path / 'e'}"],
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    assert "data.extra._target_='os.system'" in out and "edited.ckpt" in out, out[-3000:]
    assert not marker.exists()


def test_overrides_yaml_beside_a_checkpoint_is_untrusted() -> None:
    fine = ["attention=dot", "model.optimizer.lr=0.01", "+data.x=1", "~callbacks.media", "tags=[a,b]"]
    assert check_overrides(fine, "overrides.yaml") == fine
    refused = {
        "+callbacks.x={_target_: os.system, command: 'touch x'}": "callbacks.x._target_='os.system'",
        "model.optimizer._target_=builtins.eval": "builtins.eval",
        "hydra.callbacks.x._target_=attnlab.cli.sweep_summary.SweepSummary": "overrides Hydra itself",
        "hydra/launcher=joblib": "overrides Hydra itself",
        "attention=dot,none": "sweep",
    }
    for override, message in refused.items():
        with pytest.raises(ConfigError, match="overrides.yaml") as info:
            check_overrides([override], "overrides.yaml")
        assert message in str(info.value), override
    with pytest.raises(ConfigError, match="model._target_"):
        check_config_targets({"model": {"_target_": "subprocess.run"}}, "ckpt")


def test_resume_refuses_a_tampered_overrides_yaml(translation_ckpt: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / "checkpoints").mkdir()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(translation_ckpt.read_bytes())
    marker = tmp_path / "OVERRIDE_RAN"
    (run_dir / ".hydra" / "overrides.yaml").write_text(
        json.dumps([f"+callbacks.evil={{_target_: os.system, command: 'touch {marker}'}}"])
    )
    proc = run_script(["train.py", f"ckpt_path={ckpt}"], timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "os.system" in out and "overrides.yaml" in out, out[-3000:]
    assert not marker.exists()


def _old_style(checkpoint: dict) -> dict:
    """A checkpoint as attnlab wrote it before this change: partials and a numpy RNG array."""
    old = dict(checkpoint)
    hparams = dict(old["hyper_parameters"])
    hparams["optimizer"] = functools.partial(torch.optim.AdamW, lr=0.003, weight_decay=0.01)
    hparams["scheduler"] = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.003, pct_start=0.1)
    old["hyper_parameters"] = hparams
    rng = dict(old["attnlab_rng_states"])
    kind, key, *rest = rng["numpy"]
    rng["numpy"] = (kind, np.asarray(key).astype(np.uint32), *rest)
    old["attnlab_rng_states"] = rng
    return old


def test_an_old_checkpoint_says_how_to_convert_and_the_converter_makes_it_load(
    translation_ckpt: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old.ckpt"
    torch.save(_old_style(torch.load(translation_ckpt, weights_only=True)), old)
    with pytest.raises(ConfigError) as info:
        load_checkpoint(old)
    assert f"python scripts/convert_checkpoint.py {old} --trust" in str(info.value)
    proc = run_script([str(REPO / "scripts" / "convert_checkpoint.py"), str(old)], timeout=120)
    assert proc.returncode == 2 and "--trust" in proc.stderr  # never reads the unsafe way unasked
    proc = run_script([str(REPO / "scripts" / "convert_checkpoint.py"), str(old), "--trust", "--in-place"], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "old.ckpt.pickled").is_file()
    converted = load_checkpoint(old)
    assert converted["hyper_parameters"]["optimizer"] == {
        "_target_": "torch.optim.adamw.AdamW",
        "lr": 0.003,
        "weight_decay": 0.01,
    }
    reference = torch.load(translation_ckpt, weights_only=True)
    for name, tensor in reference["state_dict"].items():
        assert torch.equal(converted["state_dict"][name], tensor), name
    assert torch.equal(converted["attnlab_rng_states"]["numpy"][1], reference["attnlab_rng_states"]["numpy"][1])
