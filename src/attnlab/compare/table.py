"""The comparison table: rich on the terminal, Markdown and CSV on disk."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from attnlab.compare.records import RunRecord

# Hyper-parameters shown when present (the rest stay in metrics.json).
HPARAM_COLUMNS = ("model.optimizer.lr", "model.net.hidden_dim", "model.net.dropout", "trainer.max_epochs")
METRIC_COLUMNS = ("test/bleu", "test/chrf", "test/bleu_len_gt20", "test/map", "test/map_50", "test/map_75")
SHORT_LABELS = {"model.optimizer.lr": "lr", "model.net.hidden_dim": "hidden", "model.net.dropout": "dropout",
                "trainer.max_epochs": "epochs", "test/bleu_len_gt20": "test/bleu >20w"}


def table_rows(records: Sequence[RunRecord]) -> tuple[list[str], list[list[str]]]:
    """Header and rows; only columns that at least one run has are kept."""
    hparams = [h for h in HPARAM_COLUMNS if any(r.hparams.get(h) is not None for r in records)]
    metrics = [m for m in METRIC_COLUMNS if any(r.metrics.get(m) is not None for r in records)]
    header = ["run", "task", "attention", *hparams, "main metric", "value", *metrics, "time (s)", "status"]
    rows = []
    for rec in sorted(records, key=lambda r: (r.task, r.attention, r.name)):
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
        return f"{value:.{digits}g}" if abs(value) < 1e-3 and value != 0 else f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return str(value)


def print_table(header: list[str], rows: list[list[str]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in header:
        # Identity columns never wrap (a run name broken over two lines is hard to read); the
        # config keys get short labels on the terminal (Markdown and CSV keep the full keys).
        table.add_column(SHORT_LABELS.get(col, col), overflow="fold", no_wrap=col in ("run", "task", "attention"))
    for row in rows:
        table.add_row(*row)
    Console(width=200).print(table)


def write_markdown(header: list[str], rows: list[list[str]], path: Path) -> Path:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_csv(header: list[str], rows: list[list[str]], path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path
