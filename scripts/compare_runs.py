"""Compare runs: ``python scripts/compare_runs.py logs/train/multiruns/<sweep> [more runs...] [--out DIR]``.

Reads each run's ``metrics.json`` (or W&B offline run folders, or ``--wandb ENTITY/PROJECT``), prints a
table (task, attention, key hyper-parameters, metrics, time, status), writes it as Markdown and CSV,
and draws PNG plots: the main metric by attention kind per task, and translation BLEU by source length.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="sweep folders, run folders or W&B offline run folders")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read runs from W&B's public API instead")
    parser.add_argument("--out", type=Path, help="where to write comparison.md/.csv and the PNGs")
    args = parser.parse_args(argv)
    if not args.paths and not args.wandb:
        parser.error("give at least one folder, or --wandb ENTITY/PROJECT")

    from attnlab.compare.plots import plot_bleu_by_length, plot_main_metric
    from attnlab.compare.records import load_records, records_from_wandb_project
    from attnlab.compare.table import print_table, table_rows, write_csv, write_markdown

    try:
        records = records_from_wandb_project(args.wandb) if args.wandb else load_records(args.paths)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not records:
        print("error: no runs found", file=sys.stderr)
        return 2
    out = args.out or ((args.paths[0] if args.paths[0].is_dir() else args.paths[0].parent) / "comparison"
                       if args.paths else Path("comparison"))
    out.mkdir(parents=True, exist_ok=True)
    header, rows = table_rows(records)
    print_table(header, rows, title=f"{len(records)} runs")
    written = [write_markdown(header, rows, out / "comparison.md"), write_csv(header, rows, out / "comparison.csv")]
    written += [p for p in (plot_main_metric(records, out / "main_metric_by_attention.png"),
                            plot_bleu_by_length(records, out / "bleu_by_length.png")) if p]
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
