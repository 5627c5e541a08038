"""Compare runs: ``python scripts/compare_runs.py logs/train/multiruns/<sweep> [more runs...] [--out DIR]``.

Reads each run's ``metrics.json`` (or W&B offline run folders, or ``--wandb ENTITY/PROJECT``) and
prints one table row per run, then per task one row per configuration with its seeds aggregated
(n, mean ± std, min–max of every metric and cost figure), then each attention kind's difference to
the baseline (``--baseline attention=none``) with its 95% CI and p-value from a paired bootstrap on
the runs' saved test outputs. Writes comparison.md, comparison.csv, aggregated.csv, significance.csv
and PNG plots (main metric by attention, BLEU by source length, quality against cost per task), and
logs the whole comparison as one W&B run with job_type=compare (offline unless logged in).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="sweep folders, run folders or W&B offline run folders")
    parser.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read runs from W&B's public API instead")
    parser.add_argument(
        "--out", type=Path, help="where to write the tables and plots (default: <first path>/comparison)"
    )
    parser.add_argument(
        "--baseline",
        default="attention=none",
        metavar="KEY=VALUE",
        help="the runs every other kind is tested against, per task (default: attention=none; "
        "'off' skips the significance tests)",
    )
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    parser.add_argument("--no-wandb-run", action="store_true", help="do not log the comparison as a W&B run")
    parser.add_argument("--wandb-project", default="attnlab", help="project of the comparison's W&B run")
    parser.add_argument("--wandb-entity", default=None, help="entity of the comparison's W&B run")
    parser.add_argument(
        "--wandb-dir",
        type=Path,
        default=None,
        help="where the comparison's W&B run is kept (default: the project's logs/)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Compare the runs ``argv`` names; return the exit status (2: nothing to compare)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.paths and not args.wandb:
        parser.error("give at least one folder, or --wandb ENTITY/PROJECT")
    if args.resamples < 1:
        parser.error("--resamples must be at least 1")

    from attnlab.compare.records import load_records, records_from_wandb_project
    from attnlab.compare.report import build_comparison

    try:
        records = records_from_wandb_project(args.wandb) if args.wandb else load_records(args.paths)
    except (FileNotFoundError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not records:
        print("error: no runs found", file=sys.stderr)
        return 2
    first = args.paths[0] if args.paths else None
    out = args.out or ((first if first.is_dir() else first.parent) / "comparison" if first else Path("comparison"))
    title = first.resolve().name if first else args.wandb.replace("/", "-")
    baseline = None if args.baseline.lower() in ("off", "") else args.baseline
    try:
        comparison = build_comparison(records, title, baseline, args.resamples)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    comparison.print()
    for path in comparison.write(out):
        print(f"wrote {path}")
    if not args.no_wandb_run:
        from attnlab.compare.wandb_run import log_comparison_run
        from attnlab.project import project_root

        try:
            run_dir = log_comparison_run(
                comparison,
                project=args.wandb_project,
                entity=args.wandb_entity,
                save_dir=args.wandb_dir or project_root() / "logs",
            )
        except Exception as exc:  # noqa: BLE001 - the tables and plots above are written either way
            print(f"error: the comparison was written but not logged to W&B: {exc}", file=sys.stderr)
            return 1
        if run_dir:
            print(f"logged the comparison as a W&B run (job_type=compare): {run_dir}")
    return 0
