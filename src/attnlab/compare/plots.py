"""PNG plots: the main metric by attention kind per task, translation BLEU by source length, and
quality against cost per task. Seeds of one configuration make one bar or point with a standard
deviation error bar; the individual runs are drawn as dots."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from attnlab.compare.aggregate import RunGroup, attention_order
from attnlab.compare.table import COST_LABELS

__all__ = ["plot_bleu_by_length", "plot_main_metric", "plot_quality_vs_cost"]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _std(values: Sequence[float]) -> float:
    return stdev(values) if len(values) > 1 else 0.0


def _color(kind: str) -> str:
    return "#999999" if kind == "none" else "#4c72b0"


def plot_main_metric(groups: Sequence[RunGroup], path: Path) -> Path | None:
    """One panel per task: bars of the main metric (mean over seeds, ±1 std) by attention kind, a dot per run."""
    plt = _pyplot()
    tasks = sorted({g.task for g in groups if g.main_metric and g.values(g.main_metric)})
    if not tasks:
        return None
    fig, axes = plt.subplots(1, len(tasks), figsize=(5.5 * len(tasks), 4.2), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        shown = [g for g in groups if g.task == task and g.main_metric and g.values(g.main_metric)]
        metric = shown[0].main_metric or "metric"
        values = [g.values(metric) for g in shown]
        means = [mean(v) for v in values]
        labels = [g.label for g in shown]
        bars = ax.bar(
            labels,
            means,
            yerr=[_std(v) for v in values],
            capsize=4,
            color=[_color(g.attention) for g in shown],
            error_kw={"elinewidth": 1},
        )
        for i, v in enumerate(values):
            ax.scatter([i] * len(v), v, color="black", s=12, zorder=3)
        ax.bar_label(bars, labels=[f"{m:.3g}" for m in means], padding=2, fontsize=9)
        n = sorted({len(v) for v in values})
        ax.set_title(f"{task}: {metric} by attention (n={'/'.join(map(str, n))} per bar)")
        ax.set_ylabel(metric + (" (mean ± std)" if max(n) > 1 else ""))
        ax.set_xlabel("attention")
        top = max(max(v) for v in values) * 1.15
        if top <= 0:
            # All zero (e.g. a debug=limit smoke sweep): show the metric's natural scale, not 0..1e-6.
            top = 100.0 if any(name in metric for name in ("bleu", "chrf")) else 1.0
        ax.set_ylim(min(0.0, min(means) * 1.15), top)
        ax.grid(axis="y", alpha=0.3)
        if len(labels) > 5 or max(len(lab) for lab in labels) > 12:
            ax.tick_params(axis="x", labelrotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_bleu_by_length(groups: Sequence[RunGroup], path: Path) -> Path | None:
    """Translation BLEU against source length, one line per group (mean over seeds, ±1 std)
    (Bahdanau et al. 2014, Fig. 2)."""
    curves: dict[str, dict[str, list[float]]] = {}
    labels: list[str] = []
    kinds: dict[str, str] = {}
    for g in groups:
        if g.task != "translation":
            continue
        per_label: dict[str, list[float]] = defaultdict(list)
        for rec in g.records:
            for label, value in rec.bleu_by_length():
                per_label[label].append(value)
                if label not in labels:
                    labels.append(label)
        if per_label:
            curves[g.label], kinds[g.label] = per_label, g.attention
    if not curves:
        return None
    plt = _pyplot()
    labels.sort(key=lambda s: int(s.split("-")[0]))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, per_label in curves.items():
        xs = [i for i, lab in enumerate(labels) if per_label.get(lab)]
        ys = [mean(per_label[labels[i]]) for i in xs]
        errs = [_std(per_label[labels[i]]) for i in xs]
        ax.errorbar(
            xs, ys, yerr=errs, marker="o", capsize=3, label=name, linestyle="--" if kinds[name] == "none" else "-"
        )
    ax.set_xticks(range(len(labels)), [f"{lab} words" for lab in labels])
    ax.set_xlabel("source sentence length")
    ax.set_ylabel("test BLEU (mean ± std over seeds)")
    ax.set_title("Translation BLEU by source length")
    ax.set_ylim(0, 105)
    ax.grid(alpha=0.3)
    ax.legend(title="attention")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


#: Cost axes of the quality-vs-cost plot, in order; a task gets the ones its runs recorded.
_COST_AXES = (
    ("cost/train_tokens_per_s", "cost/train_images_per_s"),
    ("cost/test_ms_per_sentence", "cost/test_ms_per_image"),
    ("cost/peak_gpu_mem_mb", "cost/peak_rss_mb"),
    ("cost/params_total",),
)


def plot_quality_vs_cost(groups: Sequence[RunGroup], task: str, path: Path) -> Path | None:
    """What the better kind costs: the main metric against each recorded cost figure, one point per
    attention kind (mean ± std over seeds on both axes), labelled with its attention parameters."""
    shown = [g for g in groups if g.task == task and g.main_metric and g.values(g.main_metric)]
    if not shown:
        return None
    present = set().union(*(g.metric_names() for g in shown))
    axes_keys = [
        next(k for k in options if k in present) for options in _COST_AXES if any(k in present for k in options)
    ]
    if not axes_keys:
        return None
    plt = _pyplot()
    metric = shown[0].main_metric
    assert metric is not None  # `shown` keeps only groups with a main metric
    fig, axes = plt.subplots(1, len(axes_keys), figsize=(4.6 * len(axes_keys), 4.2), squeeze=False)
    colors = plt.get_cmap("tab10")
    order = {k: i for i, k in enumerate(attention_order({g.attention for g in shown}))}
    for ax, cost in zip(axes[0], axes_keys):
        for g in shown:
            xs, ys = g.values(cost), g.values(metric)
            if not xs:
                continue
            attn = g.stats("cost/params_attention")
            label = g.label + (f" ({attn.mean:,.0f} attn params)" if attn is not None else "")
            color = colors(order[g.attention] % 10)
            ax.errorbar(
                [mean(xs)],
                [mean(ys)],
                xerr=[_std(xs)],
                yerr=[_std(ys)],
                fmt="o",
                capsize=3,
                color=color,
                label=label,
                markersize=7,
            )
            ax.scatter(xs, ys, color=color, s=10, alpha=0.5)
        ax.set_xlabel(COST_LABELS.get(cost, cost) + (" (higher is cheaper)" if cost.endswith("_per_s") else ""))
        ax.set_ylabel(f"{metric} (mean ± std)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, title="attention")
    fig.suptitle(f"{task}: {metric} against cost (one point per attention kind; dots = runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
