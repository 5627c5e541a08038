"""W&B media for translation: alignment heat maps and a table of sample translations.

Pure drawing: :meth:`attnlab.tasks.translation.TranslationTask.media` decodes the examples and
hands the results here; what goes wrong is caught once, in :meth:`attnlab.tasks.base.TaskModule.log_media`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from attnlab.tasks.media import figure_pixels, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Alignment", "alignment_figure", "alignment_images", "samples_table", "token_labels"]

#: One decoded sentence: (source labels, hypothesis labels, weights (T, S), hypothesis text).
Alignment = tuple[list[str], list[str], np.ndarray, str]


def token_labels(tokenizer: Any, ids: Sequence[int], specials: dict[int, str]) -> list[str]:
    """One readable label per token id (special ids by name), for heat-map axes."""
    labels = []
    for i in ids:
        if i in specials:
            labels.append(specials[i])
            continue
        to_token = getattr(tokenizer, "id_to_token", None)
        text = to_token(int(i)) if callable(to_token) else None
        if not text:
            text = tokenizer.decode([int(i)])
        # Drop SentencePiece-style word-start markers: axis labels should read as plain words.
        text = (text or "").replace("\u2581", "") or text
        labels.append(text or f"#{int(i)}")
    return labels


def alignment_figure(
    src_labels: Sequence[str], hyp_labels: Sequence[str], weights: np.ndarray, title: str = ""
) -> Figure:
    """Heat map of attention weights: source tokens on x, hypothesis tokens on y.

    Args:
        src_labels: S source token labels.
        hyp_labels: T hypothesis token labels.
        weights: (T, S) attention weights (rows sum to 1 for real attention).
        title: figure title.
    """
    n_src, n_hyp = len(src_labels), len(hyp_labels)
    fig = new_figure(max(4.0, 0.32 * n_src + 1.5), max(3.0, 0.32 * n_hyp + 1.5))
    ax = fig.add_subplot(1, 1, 1)
    vmax = max(1e-6, float(np.max(weights, initial=0.0)))
    image = ax.imshow(weights, cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto")
    ax.set_xticks(range(n_src))
    ax.set_xticklabels(src_labels, rotation=90, fontsize=8)
    ax.set_yticks(range(n_hyp))
    ax.set_yticklabels(hyp_labels, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("hypothesis")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    fig.tight_layout()
    return fig


def alignment_images(
    examples: Sequence[tuple[str, str]], aligned: Sequence[Alignment], epoch: int
) -> dict[str, list[Any]]:
    """``{"val/alignment_<k>": [wandb.Image]}`` for each (source, reference) example and its alignment.

    One key per example: W&B then shows each sentence's alignment evolving over epochs (and does
    not complain about differently sized images under one key).
    """
    import wandb

    images = {}
    for k, ((src, ref), (src_labels, hyp_labels, weights, hyp)) in enumerate(zip(examples, aligned)):
        pixels = figure_pixels(alignment_figure(src_labels, hyp_labels, weights, title=f"epoch {epoch}"))
        images[f"val/alignment_{k}"] = [wandb.Image(pixels, caption=f"src: {src}\nref: {ref}\nhyp: {hyp}")]
    return images


def samples_table(samples: Sequence[tuple[str, str, str, int]], epoch: int) -> Any:
    """A ``wandb.Table`` of (source, reference, hypothesis, source words) validation samples."""
    import wandb

    columns: list[Any] = ["epoch", "source", "reference", "hypothesis", "source_words", "exact_match"]
    rows = [[epoch, s, r, h, int(n), h.strip() == r.strip()] for s, r, h, n in samples]
    return wandb.Table(columns=columns, data=rows)
