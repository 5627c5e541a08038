"""PNG plots: the main metric by attention kind per task, and translation BLEU by source length."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Sequence

from attnlab.compare.records import RunRecord

ATTENTION_ORDER = ("additive", "dot", "general", "multihead", "none")


def _order(kinds: set[str]) -> list[str]:
    return [k for k in ATTENTION_ORDER if k in kinds] + sorted(kinds - set(ATTENTION_ORDER))


def plot_main_metric(records: Sequence[RunRecord], path: Path) -> Path | None:
    """One panel per task: bars of the main metric (mean over runs, dots for each run) by attention kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.status == "ok" and r.main_value is not None]
    tasks = sorted({r.task for r in ok})
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        runs = [r for r in ok if r.task == task]
        kinds = _order({r.attention for r in runs})
        values = {k: [r.main_value for r in runs if r.attention == k] for k in kinds}
        means = [mean(values[k]) for k in kinds]
        bars = ax.bar(kinds, means, color=["#4c72b0" if k != "none" else "#999999" for k in kinds])
        for i, k in enumerate(kinds):
            ax.scatter([i] * len(values[k]), values[k], color="black", s=12, zorder=3)
        ax.bar_label(bars, labels=[f"{m:.3g}" for m in means], padding=2, fontsize=9)
        metric = runs[0].main_metric or "metric"
        ax.set_title(f"{task}: {metric} by attention")
        ax.set_ylabel(metric)
        ax.set_xlabel("attention")
        top = max(means) * 1.15
        if top <= 0:
            # All zero (e.g. a debug=limit smoke sweep): show the metric's natural scale, not 0..1e-6.
            top = 100.0 if any(name in metric for name in ("bleu", "chrf")) else 1.0
        ax.set_ylim(min(0.0, min(means) * 1.15), top)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_bleu_by_length(records: Sequence[RunRecord], path: Path) -> Path | None:
    """Translation BLEU against source length, one line per attention kind (Bahdanau et al. 2014, Fig. 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    labels: list[str] = []
    for rec in records:
        if rec.status != "ok" or rec.task != "translation":
            continue
        for label, value in rec.bleu_by_length():
            curves[rec.attention][label].append(value)
            if label not in labels:
                labels.append(label)
    if not curves:
        return None
    labels.sort(key=lambda s: int(s.split("-")[0]))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for kind in _order(set(curves)):
        xs = [i for i, lab in enumerate(labels) if curves[kind].get(lab)]
        ys = [mean(curves[kind][labels[i]]) for i in xs]
        ax.plot(xs, ys, marker="o", label=kind, linestyle="--" if kind == "none" else "-")
    ax.set_xticks(range(len(labels)), [f"{lab} words" for lab in labels])
    ax.set_xlabel("source sentence length")
    ax.set_ylabel("test BLEU")
    ax.set_title("Translation BLEU by source length")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(title="attention")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
