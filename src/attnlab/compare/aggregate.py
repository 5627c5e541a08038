"""Runs that differ only in their seed, grouped: n, mean ± std and min/max of every figure.

A group is one task, one attention kind and one setting of everything else (config choices and
hyper-parameters, the seed and what follows it, such as ``data.seed``, left out). Groups of the
same task and kind that differ in something else (a learning rate, say) are told apart by a
``variant`` label naming what differs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import mean, stdev
from typing import Any

from attnlab.compare.records import RunRecord

__all__ = ["ATTENTION_ORDER", "RunGroup", "Stats", "attention_order", "group_runs", "is_seed_key", "setting_of"]

ATTENTION_ORDER = ("additive", "dot", "general", "multihead", "none")

# Choices that say how a run was recorded or launched, not what was trained.
_NOT_SETTINGS = ("logger", "callbacks", "paths", "extras", "local", "hydra", "hparams_search")


def attention_order(kinds: set[str]) -> list[str]:
    """Attention kinds in the project's order (``none``, the baseline, last of the known ones)."""
    return [k for k in ATTENTION_ORDER if k in kinds] + sorted(kinds - set(ATTENTION_ORDER))


def is_seed_key(key: str) -> bool:
    """``seed`` and anything set from it (``data.seed``: the batch order); not ``data.corpus_seed``."""
    return key == "seed" or key.endswith(".seed")


def setting_of(record: RunRecord, leave_out: Sequence[str] = ()) -> tuple[tuple[str, str], ...]:
    """What a run trained, as sorted ``(key, value)`` pairs: its choices and hyper-parameters without
    the seed keys and without ``leave_out`` (keys, and anything under ``key.``)."""

    def kept(key: str) -> bool:
        return not any(key == k or key.startswith(k + ".") for k in leave_out)

    items = {f"choice:{k}": str(v) for k, v in record.choices.items() if not k.startswith(_NOT_SETTINGS) and kept(k)}
    items.update({k: str(v) for k, v in record.hparams.items() if not is_seed_key(k) and kept(k)})
    return tuple(sorted(items.items()))


@dataclass
class Stats:
    """One figure over a group's runs."""

    n: int
    mean: float
    std: float  # sample standard deviation; 0 for a single run
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float | None]) -> Stats | None:
        finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        if not finite:
            return None
        return cls(len(finite), mean(finite), stdev(finite) if len(finite) > 1 else 0.0, min(finite), max(finite))


@dataclass
class RunGroup:
    """Finished runs of one task, attention kind and setting: the seeds of one configuration."""

    task: str
    attention: str
    setting: tuple[tuple[str, str], ...]
    records: list[RunRecord] = field(default_factory=list)
    variant: str = ""  # what tells this group from others of its task and kind ("" when nothing does)

    @property
    def label(self) -> str:
        return self.attention + (f" ({self.variant})" if self.variant else "")

    @property
    def seeds(self) -> list[Any]:
        return sorted((r.seed for r in self.records if r.seed is not None), key=str)

    @property
    def main_metric(self) -> str | None:
        return next((r.main_metric for r in self.records if r.main_metric), None)

    def stats(self, metric: str) -> Stats | None:
        return Stats.of([r.metrics.get(metric) for r in self.records])

    def values(self, metric: str) -> list[float]:
        return [float(v) for r in self.records if (v := r.metrics.get(metric)) is not None]

    def metric_names(self) -> set[str]:
        return {k for r in self.records for k, v in r.metrics.items() if v is not None}


def group_runs(records: Sequence[RunRecord]) -> list[RunGroup]:
    """Finished runs grouped by task, attention kind and setting (seeds pooled), in a stable order."""
    groups: dict[tuple[Any, ...], RunGroup] = {}
    for rec in records:
        if rec.status != "ok":
            continue
        setting = setting_of(rec, leave_out=("attention",))
        key = (rec.task, rec.attention, setting)
        groups.setdefault(key, RunGroup(rec.task, rec.attention, setting)).records.append(rec)
    out = list(groups.values())
    for task in {g.task for g in out}:
        same_task = [g for g in out if g.task == task]
        differing = _differing_keys([dict(g.setting) for g in same_task])
        for g in same_task:
            values = dict(g.setting)
            g.variant = ",".join(f"{_short(k)}={values.get(k, '-')}" for k in differing)
    rank = {kind: i for i, kind in enumerate(attention_order({g.attention for g in out}))}
    return sorted(out, key=lambda g: (g.task, rank[g.attention], g.variant))


def _differing_keys(settings: list[dict[str, str]]) -> list[str]:
    keys = sorted({k for s in settings for k in s})
    return [k for k in keys if len({s.get(k) for s in settings}) > 1]


def _short(key: str) -> str:
    return key.removeprefix("choice:").rsplit(".", 1)[-1]
