"""One comparison of runs: the per-run and per-seed-group tables, the significance against a
baseline, the plots; printed, written (Markdown, CSV, PNG) and, on request, logged to W&B.

Used by ``scripts/compare_runs.py`` and, at the end of every multirun, by
:class:`attnlab.cli.sweep_summary.SweepSummary`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from attnlab.compare.aggregate import RunGroup, group_runs
from attnlab.compare.records import RunRecord
from attnlab.compare.significance import (
    NO_MATCHING_BASELINE,
    SignificanceRow,
    compare_to_baseline,
    format_line,
    parse_baseline,
)
from attnlab.evaluation.significance import ALPHA

__all__ = ["Comparison", "build_comparison"]


@dataclass
class Comparison:
    """Everything one comparison shows."""

    title: str
    records: list[RunRecord]
    groups: list[RunGroup]
    baseline: str | None = None
    significance: list[SignificanceRow] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def print(self, runs: bool = True) -> None:
        """The table of runs (``runs``), the aggregated table of each task and the significance lines."""
        from attnlab.compare.table import aggregated_rows, print_table, table_rows

        if runs:
            header, rows = table_rows(self.records)
            print_table(header, rows, title=f"{len(self.records)} runs")
        for task in self.tasks:
            header, rows = aggregated_rows([g for g in self.groups if g.task == task])
            print_table(header, rows, title=f"{task}: runs that differ only in seed (mean ± std, min–max)")
        if self.baseline:
            print(f"Significance against {self.baseline} (paired bootstrap; * = p < 0.05):")
            unmatched = [row for row in self.significance if row.note == NO_MATCHING_BASELINE]
            for row in self.significance:
                if row.note != NO_MATCHING_BASELINE:
                    print("  " + format_line(row))
            if unmatched:
                # An Optuna search makes one group per trial: a line each would bury the rest.
                print(f"  {len(unmatched)} configuration(s) have no {self.baseline} run with the same settings")
            if not self.significance:
                print(f"  no task has both {self.baseline} runs and others to compare")

    @property
    def tasks(self) -> list[str]:
        return sorted({g.task for g in self.groups})

    def write(self, out: Path) -> list[Path]:
        """``comparison.md`` (all sections), ``comparison.csv`` (one row per run), ``aggregated.csv``,
        ``significance.csv`` (with a baseline) and the PNG plots, into ``out``."""
        from attnlab.compare.plots import plot_bleu_by_length, plot_main_metric, plot_quality_vs_cost
        from attnlab.compare.table import aggregated_csv_rows, table_rows, write_csv

        out.mkdir(parents=True, exist_ok=True)
        header, rows = table_rows(self.records)
        written = [
            write_csv(header, rows, out / "comparison.csv"),
            write_csv(*aggregated_csv_rows(self.groups), out / "aggregated.csv"),
        ]
        if self.baseline:
            from attnlab.compare.significance import significance_table

            written.append(write_csv(*significance_table(self.significance), out / "significance.csv"))
        plots = [
            plot_main_metric(self.groups, out / "main_metric_by_attention.png"),
            plot_bleu_by_length(self.groups, out / "bleu_by_length.png"),
        ]
        plots += [plot_quality_vs_cost(self.groups, task, out / f"quality_vs_cost_{task}.png") for task in self.tasks]
        written += [p for p in plots if p]
        written.insert(0, self._write_markdown(out / "comparison.md", [p for p in plots if p]))
        self.files = written
        return written

    def _write_markdown(self, path: Path, plots: Sequence[Path]) -> Path:
        from attnlab.compare.significance import significance_table
        from attnlab.compare.table import aggregated_rows, markdown_table, table_rows

        lines = [f"# {self.title}", ""]
        for task in self.tasks:
            lines += [f"## {task}: seeds aggregated (mean ± std, min–max)", ""]
            lines += markdown_table(*aggregated_rows([g for g in self.groups if g.task == task])) + [""]
        if self.baseline:
            lines += [
                f"## Significance against {self.baseline}",
                "",
                f"Paired bootstrap; **bold** with `*`: significant at p < {ALPHA}. The bootstrap resamples test "
                "items, so it measures test-set noise; seed-to-seed spread is the std in the table above.",
                "",
            ]
            header, rows = significance_table(self.significance)
            marker = header.index(f"p < {ALPHA}")
            rows = [
                [f"**{c}**" if row[marker] == "*" and c and i != marker else c for i, c in enumerate(row)]
                for row in rows
            ]
            lines += markdown_table(header, rows) + [""]
        lines += ["## Runs", ""] + markdown_table(*table_rows(self.records)) + [""]
        lines += [f"![{p.stem}]({p.name})" for p in plots]
        path.write_text("\n".join(lines) + "\n")
        return path


def build_comparison(
    records: Sequence[RunRecord], title: str, baseline: str | None = "attention=none", n_resamples: int = 1000
) -> Comparison:
    """Group the runs by seed and, with a ``baseline`` spec, test every group against it."""
    groups = group_runs(records)
    comparison = Comparison(title, list(records), groups, baseline)
    if baseline:
        parse_baseline(baseline)  # a malformed spec is an error before any work
        comparison.significance = compare_to_baseline(groups, baseline, n_resamples)
    return comparison
