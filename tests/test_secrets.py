"""An API key in the environment or in .env is used but never written to configs, logs or metrics.json."""

from __future__ import annotations

from pathlib import Path

from .helpers import TINY_TRANSLATION, run_script

SECRET = "attnlab0secret0key0do0not0write0me0anywhere0123"


def _files_containing(root: Path, needle: str) -> list[Path]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            try:
                if needle.encode() in path.read_bytes():
                    hits.append(path)
            except OSError:
                continue
    return hits


def test_api_key_never_lands_in_run_outputs(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    proc = run_script(
        ["train.py", "debug=fdr", *TINY_TRANSLATION, f"paths.log_dir={logs}", f"hydra.run.dir={tmp_path / 'run'}"],
        env={"WANDB_API_KEY": SECRET, "WANDB_MODE": "offline"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "metrics.json").is_file()
    assert SECRET not in proc.stdout + proc.stderr
    assert _files_containing(tmp_path, SECRET) == []
