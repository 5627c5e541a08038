"""Section 1: the task in a Lightning Trainer vs the same task in a plain loop (same weights, batches, optimizer,
steps), interleaved; float32 on a CPU unless ``overrides`` set ``trainer.precision``."""

from __future__ import annotations

from typing import Any

from benchmarks.harness import job_for, run_lightning, run_plain
from benchmarks.machine import interleave
from benchmarks.report import compare, figure, target, timed
from benchmarks.settings import BenchSettings

TITLE = "1. Framework overhead (Lightning vs plain PyTorch)"
TARGET_RATIO = 0.97  # Lightning steps/s over plain-loop steps/s
SIZES = {"translation": ((60, 10, 5), (12, 3, 3), (3, 1, 1)), "detection": ((30, 5, 5), (8, 2, 3), (3, 1, 1))}


def compare_task(settings: BenchSettings, task: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Interleaved Lightning / plain runs of one task: figures, the target, details."""
    steps, warmup, repeats = settings.pick(*SIZES[task])
    extra = list(overrides or [])
    if settings.device == "cpu" and not any(o.startswith("trainer.precision=") for o in extra):
        # The overhead is per step, whatever the precision; bf16 translation steps/s varied by +-13%
        # between consecutive runs on this CPU, which would drown a 3% overhead.
        extra.append("trainer.precision=32-true")
    job = job_for(settings, task, f"overhead_{task}", extra)
    loops = {"lightning": run_lightning, "plain": run_plain}
    runs = interleave(repeats, loops, lambda name, _: loops[name](job, steps, warmup))
    lightning, plain = runs["lightning"], runs["plain"]
    model, out = str(job.cfg.model._target_).rsplit(".", 1)[-1], {"figures": []}
    names = (f"{task}: Lightning + {model}", f"{task}: plain PyTorch loop", f"{task}: ratio Lightning / plain")
    rates = ([r.steps_per_second for r in rs] for rs in (lightning, plain))
    ratio = compare(out, names, *rates, "steps/s", ratio="ratio")
    cpu_ratios = [x.steps_per_cpu_second / y.steps_per_cpu_second for x, y in zip(lightning, plain)]
    out["figures"].append(figure(f"{task}: ratio Lightning / plain, CPU time", cpu_ratios, "ratio"))
    details = {"steps": steps, "warmup": warmup, "repeats": repeats, "overrides": extra, "precision": job.precision}
    details["items_per_timed_run"] = lightning[0].items
    details["same_batches"] = all(r.fingerprints == lightning[0].fingerprints for r in lightning + plain)
    for name, rs in runs.items():
        details |= {f"seconds_{name}": [r.seconds for r in rs], f"final_loss_{name}": [r.final_loss for r in rs]}
    out["target"] = target(f"{task}: Lightning/plain steps/s", ">=", TARGET_RATIO, ratio, "ratio")
    return out | {"details": details | {"batch_size": job.cfg.data.get("batch_size")}}


@timed("overhead", TITLE)
def run(settings: BenchSettings, result: dict[str, Any]) -> None:
    """Both tasks; see the module docstring."""
    for task in ("translation", "detection"):
        out = compare_task(settings, task)
        result["figures"] += out["figures"]
        result["targets"].append(out["target"])
        result["details"][task] = out["details"]
        if not out["details"]["same_batches"]:
            result["notes"].append(f"{task}: the two loops did NOT see the same batches (fingerprints differ)")
