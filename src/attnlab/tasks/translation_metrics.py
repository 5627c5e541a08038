"""Corpus BLEU / chrF and BLEU by source length, as torchmetrics (so DDP ranks sync their states).

BLEU by source-sentence length is the curve of Bahdanau et al. (2014, Fig. 2): without
attention, translation quality collapses on long sentences. Sentences are bucketed by the
number of *words* of their source (whitespace split, before subword tokenisation):

    01-10, 11-20, 21-30, 31-40, gt40   (disjoint buckets)  and  gt20   (all sentences > 20 words)

Every bucket is its own :class:`~torchmetrics.text.SacreBLEUScore`, i.e. a *corpus* BLEU over the
sentences of that bucket (n-gram statistics summed over the bucket, then BLEU), and each
bucket also counts its sentences so empty buckets are left out of the logs rather than
reported as BLEU 0. Scores are reported on sacreBLEU's 0-100 scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, cast

import torch
from torch import Tensor, nn
from torchmetrics import Metric
from torchmetrics.aggregation import SumMetric
from torchmetrics.text import CHRFScore, SacreBLEUScore

__all__ = ["LENGTH_BUCKETS", "TranslationMetrics", "bucket_of"]

#: (name, first, last) source-length ranges in words; ``last=None`` is open-ended. The first five
#: partition all lengths; ``gt20`` overlaps them on purpose (the headline "long sentences" number).
#: sacreBLEU tokenizers offered (``flores*`` would download a model, ``ja-mecab``/``ko-mecab`` need extra packages).
BleuTokenize = Literal["13a", "intl", "char", "none", "zh"]
BLEU_TOKENIZERS: tuple[str, ...] = ("13a", "intl", "char", "none", "zh")

LENGTH_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("01-10", 1, 10),
    ("11-20", 11, 20),
    ("21-30", 21, 30),
    ("31-40", 31, 40),
    ("gt40", 41, None),
    ("gt20", 21, None),
)


def bucket_of(num_words: int, first: int, last: int | None) -> bool:
    """Whether a source of ``num_words`` words falls in the range ``[first, last]`` (``last=None``: no upper end).

    Zero-word sources count in the first bucket, so every sentence lands in exactly one disjoint bucket.
    """
    n = max(int(num_words), 1)
    return n >= first and (last is None or n <= last)


class TranslationMetrics(nn.Module):
    """Corpus BLEU, chrF and per-length-bucket BLEU of one evaluation split.

    Args:
        bleu_tokenize: sacreBLEU tokenizer (``13a``, ``intl``, ``char``, ``none``; ``flores*``
            would download a model, so they are not offered).
        lowercase: case-insensitive BLEU.

    Call :meth:`update` per batch, :meth:`compute` at the end of the epoch (all ranks), then
    :meth:`reset`.
    """

    def __init__(self, bleu_tokenize: str = "13a", lowercase: bool = False) -> None:
        super().__init__()
        if bleu_tokenize not in BLEU_TOKENIZERS:
            raise ValueError(
                f"model.bleu_tokenize={bleu_tokenize!r} is not a sacreBLEU tokenizer offered here; "
                f"choose one of {', '.join(BLEU_TOKENIZERS)}"
            )
        tokenize = cast(BleuTokenize, bleu_tokenize)
        self.bleu = SacreBLEUScore(tokenize=tokenize, lowercase=lowercase)
        # n_word_order=0: plain chrF, sacreBLEU's default (torchmetrics defaults to chrF++).
        self.chrf = CHRFScore(n_word_order=0, lowercase=lowercase)
        # ModuleDicts so the metrics follow the module's device and are found by Lightning.
        self.bucket_bleu = nn.ModuleDict(
            {name: SacreBLEUScore(tokenize=tokenize, lowercase=lowercase) for name, _, _ in LENGTH_BUCKETS}
        )
        self.bucket_count = nn.ModuleDict({name: SumMetric() for name, _, _ in LENGTH_BUCKETS})

    def update(
        self, hypotheses: Sequence[str], references: Sequence[str], src_num_words: Sequence[int] | Tensor
    ) -> None:
        """Add a batch of detokenised hypotheses and references (one reference each) with their
        source lengths in words (B,)."""
        if not (len(hypotheses) == len(references) == len(src_num_words)):
            raise ValueError(
                f"got {len(hypotheses)} hypotheses, {len(references)} references and "
                f"{len(src_num_words)} source lengths"
            )
        words = src_num_words.tolist() if isinstance(src_num_words, Tensor) else list(src_num_words)
        hyps = list(hypotheses)
        refs = [[r] for r in references]
        self.bleu.update(hyps, refs)
        self.chrf.update(hyps, refs)
        for name, first, last in LENGTH_BUCKETS:
            keep = [i for i, n in enumerate(words) if bucket_of(n, first, last)]
            # Updated even when empty, so every rank's metric has seen an update before the
            # (collective) compute and no rank warns or skips the state sync.
            self._bucket_bleu(name).update([hyps[i] for i in keep], [refs[i] for i in keep])
            self._bucket_count(name).update(torch.tensor(float(len(keep))))

    def compute(self) -> dict[str, Tensor]:
        """Synced scores (0-100): ``bleu``, ``chrf``, ``bleu_len_<bucket>`` for non-empty buckets, and
        ``n_len_<bucket>`` sentence counts for every bucket."""
        out = {"bleu": self.bleu.compute() * 100.0, "chrf": cast(Tensor, self.chrf.compute()) * 100.0}
        for name, _, _ in LENGTH_BUCKETS:
            count = self._bucket_count(name).compute()
            out[f"n_len_{name}"] = count
            # Every rank computes (the sync is collective); the synced count decides, identically on all ranks.
            bleu = self._bucket_bleu(name).compute() * 100.0
            if float(count) > 0:
                out[f"bleu_len_{name}"] = bleu
        return out

    # ModuleDict items are typed as Module; these name what each dict holds.
    def _bucket_bleu(self, name: str) -> SacreBLEUScore:
        return cast(SacreBLEUScore, self.bucket_bleu[name])

    def _bucket_count(self, name: str) -> SumMetric:
        return cast(SumMetric, self.bucket_count[name])

    def reset(self) -> None:
        """Clear all states for the next epoch."""
        for metric in self.modules():
            if metric is not self and isinstance(metric, Metric):
                metric.reset()
