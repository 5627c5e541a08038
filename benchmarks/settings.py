"""What one benchmark run measures and how hard it tries: mode, device, threads, seed, scratch dir."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

MODES = ("full", "quick", "tiny")
T = TypeVar("T")


@dataclass
class BenchSettings:
    """``mode`` (``full``; ``quick``: minutes; ``tiny``: tests), the ``device`` every section runs on, torch
    ``threads`` (None: every usable core), the ``seed`` and a scratch ``workdir``."""

    mode: str = "full"
    device: str = "cpu"
    threads: int | None = None
    seed: int = 12345
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="attnlab-bench-")))

    def __post_init__(self) -> None:
        if self.mode not in MODES or self.device not in ("cpu", "cuda"):
            raise ValueError(f"mode must be one of {MODES}, device cpu or cuda; got {self.mode!r}, {self.device!r}")
        self.workdir = Path(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)

    tiny = property(lambda self: self.mode == "tiny")

    def pick(self, full: T, quick: T, tiny: T) -> T:
        """The value for this run's mode."""
        return {"full": full, "quick": quick, "tiny": tiny}[self.mode]

    def num_threads(self) -> int:
        """``threads``, or the cores this process may run on."""
        return int(self.threads) if self.threads else len(os.sched_getaffinity(0))

    def scratch(self, name: str) -> Path:
        """A sub-folder of ``workdir`` (created)."""
        (path := self.workdir / name).mkdir(parents=True, exist_ok=True)
        return path
