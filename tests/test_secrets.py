"""An API key in the environment or in .env is used but never written to configs, logs or metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

from .helpers import REPO, TINY_TRANSLATION, run_script

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
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["wandb"]["credentials"] == "env"  # the key was seen (and only its source recorded)
    assert SECRET not in proc.stdout + proc.stderr
    assert _files_containing(tmp_path, SECRET) == []


def test_api_key_from_dotenv_is_used_but_never_written(tmp_path: Path) -> None:
    """``.env`` in the project root is read at start; the key never reaches the run's files."""
    project = tmp_path / "project"
    project.mkdir()
    (project / ".env").write_text(f"# W&B credentials\nWANDB_API_KEY={SECRET}\n")
    run_dir = tmp_path / "run"
    proc = run_script(
        ["train.py", "debug=fdr", *TINY_TRANSLATION, f"hydra.run.dir={run_dir}"],
        env={
            "WANDB_API_KEY": None,
            "WANDB_MODE": "offline",
            "PROJECT_ROOT": project,
            "ATTNLAB_CONFIG_DIR": REPO / "conf",
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["wandb"]["credentials"] == "env", record["wandb"]
    assert (project / "logs").is_dir()  # PROJECT_ROOT was honoured, so this .env was the one read
    assert SECRET not in proc.stdout + proc.stderr
    assert _files_containing(tmp_path, SECRET) == [project / ".env"]
