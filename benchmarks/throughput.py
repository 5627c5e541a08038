"""Section 3: training steps/s and tokens (images)/s of the default config in fp32, bf16-mixed and, in full mode,
compiled (interleaved); utilisation = FlopCounterMode FLOPs of a step x rate / the measured matmul peak of the dtype;
compile time spread over a default run."""

from __future__ import annotations

import statistics
from types import SimpleNamespace
from typing import Any

from benchmarks.harness import TrainingJob, job_for, quiet_lightning, run_lightning
from benchmarks.machine import interleave, peak_matmul_flops
from benchmarks.report import figure, target, timed
from benchmarks.settings import BenchSettings

TITLE = "3. Training throughput and utilisation (fp32, bf16, compiled)"
#: bf16-mixed steps/s over fp32 steps/s at default sizes (issue 12).
TARGET_BF16_SPEEDUP = {"translation": 1.8, "detection": 1.5}
FP32, BF16, COMPILE = "trainer.precision=32-true", "trainer.precision=bf16-mixed", "compile.enabled=true"
VARIANTS = {"fp32": [FP32], "bf16": [BF16], "fp32+compile": [FP32, COMPILE], "bf16+compile": [BF16, COMPILE]}
SIZES = {"translation": ((40, 6, 3), (14, 4, 2), (3, 1, 1)), "detection": ((24, 5, 3), (9, 3, 2), (3, 1, 1))}


def count_step_flops(job: TrainingJob, batches: int = 1) -> tuple[float, int, int]:
    """Matmul/conv FLOPs of ``training_step`` + backward over the first ``batches``: ``(flops, tokens, items)``."""
    from lightning_fabric.utilities.apply_func import move_data_to_device
    from torch.utils.flop_counter import FlopCounterMode

    model = job.build_task().to(job.device).train()
    model.trainer = SimpleNamespace(barebones=True)
    flops, tokens, items = 0.0, 0, 0
    for i, batch in zip(range(batches), job.datamodule.train_dataloader()):
        batch = move_data_to_device(batch, job.device)
        with FlopCounterMode(display=False) as counter, quiet_lightning():
            model.training_step(batch, i).backward()
        n, t = job.counts(batch)
        flops, items, tokens = flops + float(counter.get_total_flops()), items + n, tokens + int(t)
    return flops, tokens, items


def _compile_figures(task: str, names: list[str], runs: dict[str, list[Any]], run_steps: int, result: dict) -> dict:
    """Compile time: the first compiled warm-up beyond the eager one (later runs hit caches), over a default run."""
    ratios = {}
    for v in (n for n in names if "compile" in n):
        eager = v.split("+")[0]
        extra = runs[v][0].first_seconds - statistics.median(r.first_seconds for r in runs[eager])
        step_eager, step_comp = (1 / statistics.median(r.steps_per_second for r in runs[k]) for k in (eager, v))
        ratios[f"{v}_default_run_ratio"] = ratio = (extra + run_steps * step_comp) / (run_steps * step_eager)
        name = f"{task} {v} / {eager}: time of a default run ({run_steps} steps)"
        result["figures"] += [
            figure(f"{task} {v}: compile time (first warm-up beyond eager)", extra, "s"),
            figure(name, ratio, "x", note="compile time included; < 1 means compiling wins"),
        ]
    return ratios


def _measure_task(settings: BenchSettings, task: str, peaks: dict[str, float], result: dict[str, Any]) -> None:
    steps, warmup, repeats = settings.pick(*SIZES[task])
    # Compile in full mode only (minutes on a CPU): fp32 and bf16 on a CPU, bf16 alone on a GPU (as trainer=gpu).
    skip = {"fp32+compile"} if settings.device == "cuda" else set()
    names = [v for v in VARIANTS if v not in skip and (settings.mode == "full" or "compile" not in v)]
    jobs = {v: job_for(settings, task, f"throughput_{task}_{v.replace('+', '_')}", VARIANTS[v]) for v in names}
    runs = interleave(repeats, names, lambda v, _: run_lightning(jobs[v], steps, warmup))
    flops, flop_tokens, flop_items = count_step_flops(jobs["fp32"], settings.pick(3, 1, 1))
    translation = task == "translation"
    unit, per = ("tokens/s", flops / max(flop_tokens, 1)) if translation else ("images/s", flops / max(flop_items, 1))
    for v in names:
        rates = [(r.tokens if translation else r.items) / r.seconds for r in runs[v]]
        dtype = "bf16" if v.startswith("bf16") else "fp32"
        result["figures"] += [
            figure(f"{task} {v}: training {unit}", rates, unit),
            figure(f"{task} {v}: steps/s", [r.steps_per_second for r in runs[v]], "steps/s"),
            figure(
                f"{task} {v}: utilisation of the {dtype} matmul peak", [per * x / peaks[dtype] for x in rates], "ratio"
            ),
        ]
    pairs = list(zip(runs["bf16"], runs["fp32"]))
    speedup = [b.steps_per_second / f.steps_per_second for b, f in pairs]
    cpu_speedup = [b.steps_per_cpu_second / f.steps_per_cpu_second for b, f in pairs]
    result["figures"] += [
        figure(f"{task}: bf16 / fp32 steps/s", speedup, "x", note="per interleaved pair"),
        figure(f"{task}: bf16 / fp32 steps per CPU-second", cpu_speedup, "x", note="less sensitive to load"),
    ]
    goal, name = TARGET_BF16_SPEEDUP[task], f"{task}: bf16-mixed / fp32 training steps/s"
    result["targets"].append(target(name, ">=", goal, statistics.median(speedup), "x"))
    run_steps = int(jobs["fp32"].cfg.trainer.max_epochs) * len(jobs["fp32"].datamodule.train_dataloader())
    details = {"steps": steps, "warmup": warmup, "repeats": repeats, "flops_per_step": flops, "flops_per_unit": per}
    details |= {"default_run_steps": run_steps, "first_seconds": {v: [r.first_seconds for r in runs[v]] for v in names}}
    result["details"][task] = details | _compile_figures(task, names, runs, run_steps, result)


@timed("throughput", TITLE)
def run(settings: BenchSettings, result: dict[str, Any]) -> None:
    """Both peaks, then each task's variants."""
    n = settings.pick(2048, 2048, 256) if settings.device == "cpu" else settings.pick(8192, 8192, 1024)
    peaks = {}
    for name, dtype in (("fp32", "float32"), ("bf16", "bfloat16")):
        samples = peak_matmul_flops(settings.device, dtype, n=n, repeats=settings.pick(5, 3, 2))
        result["figures"].append(figure(f"dense matmul peak, {name} {n}x{n}", samples, "FLOP/s"))
        peaks[name] = statistics.median(samples)
    for task in ("translation", "detection"):
        _measure_task(settings, task, peaks, result)
