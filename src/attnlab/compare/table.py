"""The comparison table: rich on the terminal, Markdown and CSV on disk."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from attnlab.compare.aggregate import RunGroup, Stats
from attnlab.compare.records import RunRecord

# Hyper-parameters shown when present (the rest stay in metrics.json).
HPARAM_COLUMNS = ("seed", "model.optimizer.lr", "model.net.hidden_dim", "model.net.dropout", "trainer.max_epochs")
METRIC_COLUMNS = ("test/bleu", "test/chrf", "test/bleu_len_gt20", "test/map", "test/map_50", "test/map_75")
SHORT_LABELS = {
    "model.optimizer.lr": "lr",
    "model.net.hidden_dim": "hidden",
    "model.net.dropout": "dropout",
    "trainer.max_epochs": "epochs",
    "test/bleu_len_gt20": "test/bleu >20w",
}


def table_rows(records: Sequence[RunRecord]) -> tuple[list[str], list[list[str]]]:
    """Header and rows; only columns that at least one run has are kept."""
    hparams = [h for h in HPARAM_COLUMNS if any(r.hparams.get(h) is not None for r in records)]
    metrics = [m for m in METRIC_COLUMNS if any(r.metrics.get(m) is not None for r in records)]
    header = ["run", "task", "attention", *hparams, "main metric", "value", *metrics, "time (s)", "status"]
    rows = []
    for rec in sorted(records, key=lambda r: (r.task, r.attention, str(r.seed), r.name)):
        value = rec.main_value
        rows.append(
            [
                rec.name,
                rec.task,
                rec.attention,
                *[_fmt(rec.hparams.get(h)) for h in hparams],
                rec.main_metric or "",
                _fmt(value),
                *[_fmt(rec.metrics.get(m)) for m in metrics],
                _fmt(rec.duration_s, digits=1),
                rec.status + (f" ({rec.error[:60]})" if rec.error else ""),
            ]
        )
    return header, rows


def _fmt(value: object, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return (
            f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}".rstrip("0").rstrip(".")
        )
    return str(value)


def print_table(header: list[str], rows: list[list[str]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in header:
        # Identity columns never wrap (a run name broken over two lines is hard to read); the
        # config keys get short labels on the terminal (Markdown and CSV keep the full keys).
        table.add_column(
            SHORT_LABELS.get(col, col), overflow="fold", no_wrap=col in ("run", "task", "attention", "variant")
        )
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]


def write_markdown(header: list[str], rows: list[list[str]], path: Path) -> Path:
    path.write_text("\n".join(markdown_table(header, rows)) + "\n")
    return path


def write_csv(header: list[str], rows: Sequence[Sequence[Any]], path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------------------------------------- seeds

#: Cost figures in the order they are shown (those a task's runs have), with short labels.
COST_LABELS = {
    "cost/params_total": "params",
    "cost/params_attention": "attn params",
    "cost/train_wall_s": "train s",
    "cost/steps_per_s": "steps/s",
    "cost/train_tokens_per_s": "tokens/s",
    "cost/train_images_per_s": "images/s",
    "cost/peak_rss_mb": "peak RSS MB",
    "cost/peak_gpu_mem_mb": "peak GPU MB",
    "cost/test_ms_per_sentence": "test ms/sentence",
    "cost/test_ms_per_image": "test ms/image",
}


def group_metrics(groups: Sequence[RunGroup]) -> tuple[list[str], list[str]]:
    """(quality metrics, cost figures) the groups have, in display order: the main metric first."""
    present = set().union(*(g.metric_names() for g in groups)) if groups else set()
    mains = [m for m in dict.fromkeys(g.main_metric for g in groups) if m]
    quality = mains + [m for m in METRIC_COLUMNS if m in present and m not in mains]
    return quality, [c for c in COST_LABELS if c in present]


def _num(value: float, figures: int = 4) -> str:
    """About ``figures`` significant figures, without exponents for counts (1,778,909; 936.6; 0.2308)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    if abs(value) >= 10**figures:
        return f"{value:,.0f}"
    return f"{value:.{figures}g}" if abs(value) >= 1e-3 else f"{value:.{figures - 2}e}"


def _mean_std(stats: Stats | None) -> str:
    if stats is None:
        return ""
    return _num(stats.mean) + (f" ± {_num(stats.std, 2)}" if stats.n > 1 else "")


def aggregated_rows(groups: Sequence[RunGroup]) -> tuple[list[str], list[list[str]]]:
    """One row per group of one task: n, seeds, quality as ``mean ± std`` with ``min–max``, then cost."""
    quality, cost = group_metrics(groups)
    variants = any(g.variant for g in groups)
    header = ["attention", *(["variant"] if variants else []), "n", "seeds"]
    for m in quality:
        header += [f"{m} (mean ± std)", f"{m} min–max"]
    header += [COST_LABELS[c] for c in cost]
    rows = []
    for g in groups:
        row = [g.attention, *([g.variant] if variants else []), str(len(g.records)), ",".join(map(str, g.seeds))]
        for m in quality:
            stats = g.stats(m)
            row += [_mean_std(stats), "" if stats is None else f"{_num(stats.min)}–{_num(stats.max)}"]
        row += [_mean_std(g.stats(c)) for c in cost]
        rows.append(row)
    return header, rows


def aggregated_csv_rows(groups: Sequence[RunGroup]) -> tuple[list[str], list[list[Any]]]:
    """Every group of every task, numbers unformatted: ``<metric>:mean/std/min/max`` columns."""
    quality, cost = group_metrics(groups)
    header = ["task", "attention", "variant", "n", "seeds"]
    for m in quality + cost:
        header += [f"{m}:{part}" for part in ("mean", "std", "min", "max")]
    rows = []
    for g in groups:
        row: list[Any] = [g.task, g.attention, g.variant, len(g.records), " ".join(map(str, g.seeds))]
        for m in quality + cost:
            stats = g.stats(m)
            row += ["", "", "", ""] if stats is None else [stats.mean, stats.std, stats.min, stats.max]
        rows.append(row)
    return header, rows
