"""Shared test set-up: offline W&B, small thread counts, the config tree and the shared fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"

# Never touch the network: W&B offline, no hub downloads.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("PROJECT_ROOT", str(REPO))


def fixtures_dir() -> Path | None:
    """``../shared/fixtures`` beside the checkout (or ``$ATTNLAB_FIXTURES``), None when absent."""
    env = os.environ.get("ATTNLAB_FIXTURES")
    path = Path(env) if env else REPO.parent / "shared" / "fixtures"
    return path if path.is_dir() else None


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    path = fixtures_dir()
    if path is None:
        pytest.skip("../shared/fixtures is absent (set ATTNLAB_FIXTURES to its path to run these tests)")
    return path


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated shapes set in the default COCO layout, for the COCO data tests (read it, don't change it)."""
    from attnlab.data.synthetic_shapes import ShapesConfig, generate_shapes_coco

    from .coco_helpers import TINY

    root = tmp_path_factory.mktemp("shapes") / "set"
    generate_shapes_coco(root, ShapesConfig.from_dict(TINY))
    return root


@pytest.fixture(autouse=True)
def _torch_threads():
    """Tests share 2 cores with each other's subprocesses: keep torch to what it was given."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: with 2 threads on a shared 2-core machine, thread hand-offs cost 10-30x the math.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; ``_torch_threads`` restores."""
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def tiny_translation_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``last.ckpt`` of one real tiny translation run (train(), 1 epoch, no logger), shared by the
    tests that load, evaluate or tamper with a checkpoint (copy it before changing it)."""
    from attnlab.cli.training import train

    from .helpers import TINY_TRANSLATION, compose_train

    tmp = tmp_path_factory.mktemp("tiny_translation_run")
    cfg = compose_train(
        [
            "debug=limit",
            "trainer.max_epochs=1",
            "logger=[]",
            "test=false",
            "extras.print_config=false",
            "callbacks.rich_progress_bar=null",
            *TINY_TRANSLATION,
        ],
        tmp,
    )
    train(cfg)
    return tmp / "run" / "checkpoints" / "last.ckpt"
