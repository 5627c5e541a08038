"""Paired bootstrap significance of a system against a baseline on the same test items.

Translation uses sacreBLEU's own paired bootstrap resampling (``sacrebleu.significance.PairedTest``
with ``test_type="bs"``, Koehn 2004 as the Moses script does it: resample sentences with
replacement, recompute corpus BLEU from per-sentence n-gram statistics). sacreBLEU returns the
system's score, its p-value and the system's own confidence interval; the 95% interval of the
*difference* is computed here from the very same resamples (the same seeded indices).

Detection (:mod:`attnlab.evaluation.coco_bootstrap`) resamples images and uses the same p-value
definition, so both tasks read alike:

    observed = |system - baseline|;  d_b = system_b - baseline_b for resample b
    p = (1 + #{ |d_b| - mean_b |d_b| > observed }) / (B + 1)

One case is degenerate: when the difference is zero in the data and in every resample (two
systems with the same output, or two that both score 0), that definition (a strict ``>``) gives
the smallest p it can, 1/(B+1), the opposite of what no difference means. There is no difference
to test, so p is 1.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["PairedResult", "difference_interval", "paired_p_value", "translation_paired_bootstrap"]

#: Significance level the reports mark differences at.
ALPHA = 0.05


@dataclass
class PairedResult:
    """A system against the baseline: scores, the difference with its 95% CI, and the p-value."""

    metric: str
    baseline: float
    system: float
    difference: float  # system - baseline
    ci_low: float
    ci_high: float
    p_value: float
    n_items: int  # resampled units: sentences or images (pooled over seeds where several)
    n_resamples: int
    method: str

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA

    def as_dict(self) -> dict[str, object]:
        return {**asdict(self), "significant": self.significant}


def paired_p_value(sample_diffs: np.ndarray, observed: float) -> float:
    """sacreBLEU's paired-bootstrap p-value (module docstring), with p = 1 for identical systems."""
    diffs = np.asarray(sample_diffs, dtype=np.float64)
    if observed == 0 and not np.any(diffs):
        return 1.0
    centred = np.abs(diffs) - np.abs(diffs).mean()
    return float((np.count_nonzero(centred > abs(observed)) + 1) / (len(diffs) + 1))


def difference_interval(sample_diffs: np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of the resampled differences."""
    low, high = np.percentile(np.asarray(sample_diffs, dtype=np.float64), [2.5, 97.5])
    return float(low), float(high)


def _sacrebleu_seed() -> int | None:
    """The seed sacreBLEU's ``PairedTest`` resamples with (``SACREBLEU_SEED``, default 12345)."""
    seed = os.environ.get("SACREBLEU_SEED", "12345")
    return None if seed.lower() == "none" else int(seed)


def translation_paired_bootstrap(
    baseline: Sequence[str],
    system: Sequence[str],
    references: Sequence[str],
    *,
    tokenize: str = "13a",
    n_resamples: int = 1000,
) -> PairedResult:
    """sacreBLEU's paired bootstrap of corpus BLEU, ``system`` against ``baseline`` (same references).

    BLEU is sacreBLEU's with ``smooth_method="none"``, the BLEU the runs log (torchmetrics'
    ``SacreBLEUScore``), so the scores here are the runs' ``test/bleu``. Seeded by
    ``SACREBLEU_SEED`` as sacreBLEU does (default 12345): the same inputs give the same answer.
    """
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import PairedTest, Result

    if not (len(baseline) == len(system) == len(references)):
        raise ValueError(f"{len(system)} system and {len(baseline)} baseline lines for {len(references)} references")
    if not references:
        raise ValueError("no test sentences to compare")
    refs = [list(references)]

    def bleu() -> BLEU:
        # force: the references may well end in a tokenised " ." (the generated corpus does).
        return BLEU(tokenize=tokenize, smooth_method="none", force=True)

    quiet = logging.getLogger("sacrebleu")  # it logs every step at INFO
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        _, scores = PairedTest(
            [("baseline", list(baseline)), ("system", list(system))],
            {"BLEU": bleu()},
            refs,
            test_type="bs",
            n_samples=n_resamples,
        )()
    finally:
        quiet.setLevel(level)
    (name,) = [k for k in scores if k != "System"]
    base_result, sys_result = scores[name]
    # PairedTest types its cells `str | Result`: only the "System" column holds names, and a bootstrap sets p_value.
    assert isinstance(base_result, Result) and isinstance(sys_result, Result) and sys_result.p_value is not None
    # The CI of the difference from the resamples sacreBLEU drew (same seed, same indices).
    metric = bleu()
    stats = [np.array(metric._extract_corpus_statistics(h, refs), dtype="float32") for h in (baseline, system)]
    rng = np.random.default_rng(_sacrebleu_seed())
    idxs = rng.choice(len(references), size=(n_resamples, len(references)), replace=True)
    resampled = [np.array([metric._compute_score_from_stats(s[i].sum(0)).score for i in idxs]) for s in stats]
    diffs = resampled[1] - resampled[0]
    observed = float(sys_result.score - base_result.score)
    degenerate = observed == 0 and not np.any(diffs)  # see the module docstring
    p_value = 1.0 if degenerate else float(sys_result.p_value)
    low, high = difference_interval(diffs)
    return PairedResult(
        "bleu",
        float(base_result.score),
        float(sys_result.score),
        observed,
        low,
        high,
        p_value,
        len(references),
        n_resamples,
        "sacreBLEU paired bootstrap",
    )
