"""Each attention kind against a baseline, per task, on the runs' saved test outputs.

``--baseline attention=none`` (any ``key=value`` of the runs' choices or hyper-parameters) picks
the baseline group of each task; every other group is compared with the baseline group that
matches it in everything but that key. Several seeds on both sides are paired by seed value (by
order when the two sides used different seeds) and then:

* translation - pooled: the paired runs' test sets are concatenated (seed i's hypotheses against
  the baseline's seed i's, sentence by sentence) and sacreBLEU's paired bootstrap resamples
  sentences of that pool; the score is corpus BLEU of the pool;
* detection - paired by image: one draw of images weighs every run of both sides, and a side's
  score is the mean mAP over its seeds.

The output says which, per line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from attnlab.compare.aggregate import RunGroup, setting_of
from attnlab.compare.records import RunRecord
from attnlab.evaluation.significance import ALPHA, PairedResult

__all__ = ["NO_MATCHING_BASELINE", "SignificanceRow", "compare_to_baseline", "format_line", "parse_baseline"]

NO_MATCHING_BASELINE = "no baseline run with the same settings"


@dataclass
class SignificanceRow:
    """One group against its task's baseline group: the result, or why there is none."""

    task: str
    system: str
    baseline: str
    result: PairedResult | None
    pairing: str
    note: str = ""


def parse_baseline(spec: str) -> tuple[str, str]:
    """``attention=none`` -> ``("attention", "none")``; a bare kind (``none``) means ``attention=<kind>``."""
    key, sep, value = spec.partition("=")
    if not sep:
        return "attention", spec.strip()
    if not key.strip() or not value.strip():
        raise ValueError(f"--baseline {spec!r}: give KEY=VALUE, e.g. attention=none")
    return key.strip(), value.strip()


def _matches(record: RunRecord, key: str, value: str) -> bool:
    if key == "attention" and record.attention == value:
        return True
    return any(key in source and _same(source[key], value) for source in (record.choices, record.hparams))


def _same(actual: Any, wanted: str) -> bool:
    if str(actual) == wanted:
        return True
    try:
        return float(actual) == float(wanted)
    except (TypeError, ValueError):
        return False


def compare_to_baseline(groups: Sequence[RunGroup], spec: str, n_resamples: int = 1000) -> list[SignificanceRow]:
    """Every non-baseline group against its baseline group (see the module docstring)."""
    key, value = parse_baseline(spec)
    rows: list[SignificanceRow] = []
    cache: dict[Any, Any] = {}  # per-run evaluations reused across comparisons (detection matching)
    for task in sorted({g.task for g in groups}):
        task_groups = [g for g in groups if g.task == task]
        baselines = [g for g in task_groups if all(_matches(r, key, value) for r in g.records)]
        if not baselines:
            continue
        for group in task_groups:
            if any(group is b for b in baselines):
                continue
            signature = setting_of(group.records[0], leave_out=(key,))
            base = next((b for b in baselines if setting_of(b.records[0], leave_out=(key,)) == signature), None)
            if base is None:
                rows.append(SignificanceRow(task, group.label, f"{key}={value}", None, "", NO_MATCHING_BASELINE))
                continue
            rows.append(_compare(task, group, base, n_resamples, cache))
    return rows


def _pairs(system: RunGroup, baseline: RunGroup) -> tuple[list[tuple[RunRecord, RunRecord]], str]:
    """Runs of the two sides paired by seed value, or by order when no seed is shared."""
    by_seed = {r.seed: r for r in baseline.records}
    shared = [(r, by_seed[r.seed]) for r in system.records if r.seed in by_seed]
    if shared:
        seeds = ",".join(str(s.seed) for s, _ in sorted(shared, key=lambda p: str(p[0].seed)))
        return shared, f"seed {seeds}" if len(shared) == 1 else f"seeds {seeds} paired by seed"
    ordered = list(
        zip(sorted(system.records, key=lambda r: str(r.seed)), sorted(baseline.records, key=lambda r: str(r.seed)))
    )
    return ordered, f"{len(ordered)} run(s) each, paired in seed order (no seed shared)"


def _compare(task: str, system: RunGroup, baseline: RunGroup, n_resamples: int, cache: dict) -> SignificanceRow:
    from attnlab.runs.test_outputs import read_test_outputs

    pairs, pairing = _pairs(system, baseline)
    outputs = []
    for sys_rec, base_rec in pairs:
        got = [read_test_outputs(r.run_dir) if r.run_dir is not None else None for r in (sys_rec, base_rec)]
        missing = [r.name for r, o in zip((sys_rec, base_rec), got) if o is None]
        if missing:
            return SignificanceRow(
                task, system.label, baseline.label, None, pairing, f"no test outputs for {', '.join(missing)}"
            )
        outputs.append(got)
    try:
        if task == "translation":
            result = _translation(outputs, n_resamples)
            pairing = "pooled over " + pairing if len(pairs) > 1 else pairing
        else:
            result = _detection(pairs, outputs, n_resamples, cache)
            pairing = "seeds averaged, " + pairing if len(pairs) > 1 else pairing
    except (ValueError, OSError) as exc:
        return SignificanceRow(task, system.label, baseline.label, None, pairing, str(exc))
    return SignificanceRow(task, system.label, baseline.label, result, pairing)


def _translation(outputs: list[list[Any]], n_resamples: int) -> PairedResult:
    from attnlab.evaluation.significance import translation_paired_bootstrap

    refs = outputs[0][1].references
    if any(o.references != refs for pair in outputs for o in pair):
        raise ValueError("the runs were tested on different sentences (their references differ)")
    tokenize = {o.bleu_tokenize for pair in outputs for o in pair}
    if len(tokenize) > 1:
        raise ValueError(f"the runs scored BLEU with different tokenizers: {sorted(tokenize)}")
    return translation_paired_bootstrap(
        [h for _, base in outputs for h in base.hypotheses],
        [h for sys_, _ in outputs for h in sys_.hypotheses],
        refs * len(outputs),
        tokenize=tokenize.pop(),
        n_resamples=n_resamples,
    )


def _detection(
    pairs: list[tuple[RunRecord, RunRecord]], outputs: list[list[Any]], n_resamples: int, cache: dict
) -> PairedResult:
    from attnlab.evaluation.coco_bootstrap import PerImageEvaluation, detection_paired_bootstrap

    first = outputs[0][0]
    common = set(first.image_ids).intersection(*(o.image_ids for pair in outputs for o in pair))
    images = [i for i in first.image_ids if i in common]
    if not images:
        raise ValueError("the runs evaluated no image in common")
    if any(o.annotation_file != first.annotation_file for pair in outputs for o in pair):
        raise ValueError("the runs were scored against different annotation files")

    def evaluation(record: RunRecord, out: Any) -> PerImageEvaluation:
        key = (str(record.run_dir), tuple(images))
        if key not in cache:
            cache[key] = PerImageEvaluation(out.annotation_file, out.detections, images, out.category_ids)
        return cache[key]

    system = [evaluation(rec, out) for (rec, _), (out, _) in zip(pairs, outputs)]
    baseline = [evaluation(rec, out) for (_, rec), (_, out) in zip(pairs, outputs)]
    return detection_paired_bootstrap(baseline, system, n_resamples=n_resamples)


def format_line(row: SignificanceRow) -> str:
    """``translation  dot vs none: Δ bleu +3.21 [+1.02, +5.40]  p=0.002 *  (method, n, pairing)``."""
    head = f"{row.task}  {row.system} vs {row.baseline}:"
    if row.result is None:
        return f"{head} not tested ({row.note})"
    r = row.result
    star = " *" if r.significant else ""
    return (
        f"{head} Δ {r.metric} {r.difference:+.4g} [{r.ci_low:+.4g}, {r.ci_high:+.4g}]  p={r.p_value:.3g}{star}  "
        f"({r.system:.4g} vs {r.baseline:.4g}; {r.method}, {r.n_resamples} resamples of {r.n_items} "
        f"{'sentences' if r.metric == 'bleu' else 'images'}; {row.pairing})"
    )


def significance_table(rows: Sequence[SignificanceRow]) -> tuple[list[str], list[list[str]]]:
    """Markdown/CSV rows; significant differences (p < 0.05) marked with ``*``."""
    header = [
        "task",
        "attention",
        "baseline",
        "metric",
        "system",
        "baseline score",
        "difference",
        "95% CI",
        "p",
        f"p < {ALPHA}",
        "method",
        "seeds",
    ]
    out = []
    for row in rows:
        r = row.result
        if r is None:
            out.append([row.task, row.system, row.baseline, "", "", "", "", "", "", "", row.note, row.pairing])
            continue
        out.append(
            [
                row.task,
                row.system,
                row.baseline,
                r.metric,
                f"{r.system:.4g}",
                f"{r.baseline:.4g}",
                f"{r.difference:+.4g}",
                f"[{r.ci_low:+.4g}, {r.ci_high:+.4g}]",
                f"{r.p_value:.3g}",
                "*" if r.significant else "",
                f"{r.method} ({r.n_resamples}x{r.n_items})",
                row.pairing,
            ]
        )
    return header, out
