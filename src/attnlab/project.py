"""Where the project's config tree and default output folders are, without importing anything heavy."""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The repository root: ``$PROJECT_ROOT`` if set, else the checkout this package was installed from.

    The package is installed editable (``pip install -e .``) from ``src/attnlab``, so the root is two
    levels up; a user running from another checkout can point ``PROJECT_ROOT`` at it.
    """
    env = os.environ.get("PROJECT_ROOT")
    if env:
        return Path(env).resolve()
    candidate = _PACKAGE_DIR.parents[1]
    if (candidate / "conf" / "train.yaml").is_file():
        return candidate
    return Path.cwd().resolve()


def config_dir() -> Path:
    """The Hydra config tree (``conf/``); ``$ATTNLAB_CONFIG_DIR`` overrides it."""
    env = os.environ.get("ATTNLAB_CONFIG_DIR")
    path = Path(env).resolve() if env else project_root() / "conf"
    if not (path / "train.yaml").is_file():
        raise FileNotFoundError(
            f"attnlab's config tree was not found at {path}. Run from a checkout of attnlab "
            "(pip install -e .), or set ATTNLAB_CONFIG_DIR to the folder holding train.yaml."
        )
    return path


def ensure_project_root_env() -> Path:
    """Set ``PROJECT_ROOT`` (read by ``conf/paths``) so runs land in ``<repo>/logs`` from any cwd."""
    root = project_root()
    os.environ.setdefault("PROJECT_ROOT", str(root))
    return root
