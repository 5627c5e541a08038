"""How the tasks draw their W&B media: a matplotlib figure rendered to RGB pixels.

Both tasks draw with matplotlib's object-oriented API (no pyplot: no global figure registry, no
GUI backend) and hand ``wandb.Image`` the pixels, so every picture is made the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["figure_pixels", "new_figure"]


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure of ``width`` x ``height`` inches with an Agg canvas (renders without a display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_pixels(fig: Figure) -> np.ndarray:
    """Render ``fig`` (made by :func:`new_figure`) to an ``(h, w, 3)`` uint8 RGB array."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())  # type: ignore[attr-defined]
    return rgba[..., :3].copy()
