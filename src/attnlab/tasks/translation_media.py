"""W&B media for translation: alignment heat maps and a table of sample translations.

Called from :meth:`attnlab.tasks.translation.TranslationTask.log_media` (which the
:class:`attnlab.callbacks.MediaLogger` callback triggers on rank 0 after validation). Every
piece is best-effort: a failure is logged as a warning and training goes on.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from attnlab.tasks.translation import TranslationTask

__all__ = ["alignment_figure", "alignments_for", "figure_to_pil", "log_translation_media", "token_labels"]

log = logging.getLogger(__name__)


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
    # The object-oriented API (no pyplot): no global figure registry, no GUI backend needed.
    from matplotlib.figure import Figure

    n_src, n_hyp = len(src_labels), len(hyp_labels)
    fig = Figure(figsize=(max(4.0, 0.32 * n_src + 1.5), max(3.0, 0.32 * n_hyp + 1.5)), dpi=100)
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


def figure_to_pil(fig: Figure) -> Any:
    """Render a figure to a PIL image (PNG round trip, independent of the matplotlib backend)."""
    from PIL import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    buf.seek(0)
    return Image.open(buf).convert("RGB")


@torch.no_grad()
def alignments_for(task: TranslationTask, sources: Sequence[str]) -> list[tuple[list[str], list[str], np.ndarray, str]]:
    """Greedy-decode ``sources`` and return, per sentence, (source labels, hypothesis labels,
    weights (T, S) as numpy, hypothesis text)."""
    hp = task.hparams
    was_training = task.training
    task.eval()
    try:
        batch = task.encode_sources(sources)
        hyp = task.model.greedy_decode(
            batch["src"], batch["src_lengths"], batch["src_mask"], max_len_a=hp.max_len_a, max_len_b=hp.max_len_b,
            max_len=task.decode_cap,
        )
    finally:
        task.train(was_training)
    texts = task.ids_to_text(hyp.tokens)
    src_specials = {hp.eos_id: "</s>", hp.pad_id: "<pad>", hp.bos_id: "<s>"}
    out = []
    for i in range(len(sources)):
        n_src = int(batch["src_lengths"][i])
        n_hyp = int(hyp.lengths[i])
        src_ids = batch["src"][i, :n_src].tolist()
        hyp_ids = hyp.tokens[i, :n_hyp].tolist()
        weights = hyp.attention[i, :n_hyp, :n_src].float().cpu().numpy()
        out.append(
            (
                token_labels(task.src_tokenizer, src_ids, src_specials),
                token_labels(task.tgt_tokenizer, hyp_ids, src_specials),
                weights,
                texts[i],
            )
        )
    return out


def _fixed_examples(task: TranslationTask, n: int) -> list[tuple[str, str]]:
    """The datamodule's fixed examples (same sentences every epoch), else the first validation samples."""
    trainer = getattr(task, "_trainer", None)
    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    fixed = getattr(datamodule, "fixed_examples", None)
    if callable(fixed):
        return [(str(s), str(t)) for s, t in fixed(n)][:n]
    return [(s, r) for s, r, _, _ in task.val_samples[:n]]


def log_translation_media(task: TranslationTask, wandb_loggers: Sequence[Any]) -> None:
    """Log alignment heat maps (``val/alignment_<k>``) and a sample table (``val/samples``) to every
    given :class:`~pytorch_lightning.loggers.WandbLogger`. Never raises."""
    if not wandb_loggers:
        return
    step = int(task.global_step)
    try:
        examples = _fixed_examples(task, int(task.hparams.n_media_examples))
        if examples:
            for k, ((src, ref), (src_labels, hyp_labels, weights, hyp)) in enumerate(
                zip(examples, alignments_for(task, [s for s, _ in examples]))
            ):
                fig = alignment_figure(src_labels, hyp_labels, weights, title=f"epoch {task.current_epoch}")
                image = figure_to_pil(fig)  # log_image wraps it in wandb.Image
                caption = f"src: {src}\nref: {ref}\nhyp: {hyp}"
                # One key per example: W&B then shows each sentence's alignment evolving over epochs
                # (and does not complain about differently sized images under one key).
                for logger in wandb_loggers:
                    logger.log_image(key=f"val/alignment_{k}", images=[image], caption=[caption], step=step)
    except Exception as exc:  # noqa: BLE001 - media must never cost a training run
        log.warning("Could not log translation alignment heat maps: %s", exc)
    try:
        if task.val_samples:
            columns = ["epoch", "source", "reference", "hypothesis", "source_words", "exact_match"]
            rows = [[task.current_epoch, s, r, h, int(n), h.strip() == r.strip()] for s, r, h, n in task.val_samples]
            for logger in wandb_loggers:
                logger.log_table(key="val/samples", columns=columns, data=rows, step=step)
    except Exception as exc:  # noqa: BLE001
        log.warning("Could not log the translation sample table: %s", exc)
