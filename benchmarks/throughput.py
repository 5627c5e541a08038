"""Section 3: training throughput per precision, compiled or not, and utilisation of the dtype's peak.

Per task, Lightning runs of the default config (:func:`benchmarks.harness.run_lightning`) in four
variants, interleaved repeat by repeat: ``fp32`` (``trainer.precision=32-true``), ``bf16``
(``bf16-mixed``), and in full mode each with ``compile.enabled=true`` (inductor). Rates:
translation target tokens/s, detection images/s. Utilisation = model FLOPs of a training step
(``torch.utils.flop_counter.FlopCounterMode``: matmuls, convolutions, attention kernels; not
element-wise work) x the rate / the dense matmul peak of the dtype the variant computes in, both
peaks measured in this run. Compile pays once: its extra warm-up time is spread over the steps of a
default run (``trainer.max_epochs`` x batches per epoch) to say whether it wins there.
"""

from __future__ import annotations

import statistics
import time
from types import SimpleNamespace
from typing import Any

from benchmarks.report import figure, section, target
from benchmarks.settings import BenchSettings

TITLE = "3. Training throughput and utilisation (fp32, bf16, compiled)"
#: bf16-mixed steps/s over fp32 steps/s at default sizes (issue 12).
TARGET_BF16_SPEEDUP = {"translation": 1.8, "detection": 1.5}
VARIANTS = {"fp32": ["trainer.precision=32-true"], "bf16": ["trainer.precision=bf16-mixed"],
            "fp32+compile": ["trainer.precision=32-true", "compile.enabled=true"],
            "bf16+compile": ["trainer.precision=bf16-mixed", "compile.enabled=true"]}


def count_step_flops(job: Any, batches: int = 1) -> tuple[float, int, int]:
    """Matmul/conv FLOPs of the task's ``training_step`` + backward over the first ``batches``
    batches: ``(flops, target tokens, items)`` summed over them."""
    from lightning_fabric.utilities.apply_func import move_data_to_device
    from torch.utils.flop_counter import FlopCounterMode

    from benchmarks.harness import quiet_lightning

    model = job.build_task().to(job.device).train()
    model.trainer = SimpleNamespace(barebones=True)
    flops, tokens, items = 0.0, 0, 0
    for i, batch in zip(range(batches), job.datamodule.train_dataloader()):
        batch = move_data_to_device(batch, job.device)
        with FlopCounterMode(display=False) as counter, quiet_lightning():
            model.training_step(batch, i).backward()
        flops += float(counter.get_total_flops())
        translation = job.task == "translation"
        items += int(batch["src"].shape[0]) if translation else len(batch[0])
        tokens += int((batch["tgt_out"] != job.pad_id).sum()) if translation else 0
    return flops, tokens, items


def _measure_task(settings: BenchSettings, task: str, peaks: dict[str, float], result: dict[str, Any]) -> None:
    from benchmarks.harness import prepare_job, run_lightning, tiny_overrides

    steps, warmup, repeats = settings.pick(full=(40, 6, 3), quick=(14, 4, 2), tiny=(3, 1, 1)) \
        if task == "translation" else settings.pick(full=(24, 5, 3), quick=(9, 3, 2), tiny=(3, 1, 1))
    # Compile in full mode only (it costs minutes on a CPU): with and without bf16 on a CPU (issue 12),
    # with bf16 alone on a GPU (what trainer=gpu trains in).
    names = [v for v in VARIANTS if "compile" not in v or settings.mode == "full" and not (
        v == "fp32+compile" and settings.device == "cuda")]
    base = tiny_overrides(task, settings.workdir) if settings.tiny else []
    jobs = {v: prepare_job(task, device=settings.device, seed=settings.seed, overrides=base + VARIANTS[v],
                           scratch=settings.scratch(f"throughput_{task}_{v.replace('+', '_')}")) for v in names}
    runs: dict[str, list[Any]] = {v: [] for v in names}
    for _ in range(repeats):  # interleaved: drifting load hits every variant alike
        for v in names:
            runs[v].append(run_lightning(jobs[v], steps, warmup))
    flops, flop_tokens, flop_items = count_step_flops(jobs["fp32"], settings.pick(3, 1, 1))
    unit, per = ("tokens/s", flops / max(flop_tokens, 1)) if task == "translation" else \
        ("images/s", flops / max(flop_items, 1))
    rates = {v: [(r.tokens if task == "translation" else r.items) / r.seconds for r in rs] for v, rs in runs.items()}
    cfg = jobs["fp32"].cfg
    run_steps = int(cfg.trainer.max_epochs) * len(jobs["fp32"].datamodule.train_dataloader())
    for v in names:
        dtype = "bf16" if v.startswith("bf16") else "fp32"
        result["figures"] += [
            figure(f"{task} {v}: training {unit}", rates[v], unit),
            figure(f"{task} {v}: steps/s", [r.steps_per_second for r in runs[v]], "steps/s"),
            figure(f"{task} {v}: utilisation of the {dtype} matmul peak", [per * x / peaks[dtype] for x in rates[v]],
                   "ratio"),
        ]
    speedup = [b.steps_per_second / f.steps_per_second for b, f in zip(runs["bf16"], runs["fp32"])]
    result["figures"] += [figure(f"{task}: bf16 / fp32 steps/s", speedup, "x", note="per interleaved pair"),
                          figure(f"{task}: bf16 / fp32 steps per CPU-second", [b.steps_per_cpu_second /
                                 f.steps_per_cpu_second for b, f in zip(runs["bf16"], runs["fp32"])], "x",
                                 note="less sensitive to other processes' load")]
    result["targets"].append(target(f"{task}: bf16-mixed / fp32 training steps/s", ">=", TARGET_BF16_SPEEDUP[task],
                                    statistics.median(speedup), "x"))
    details: dict[str, Any] = {"steps": steps, "warmup": warmup, "repeats": repeats, "flops_per_step": flops,
                               "flops_per_unit": per, "default_run_steps": run_steps,
                               "first_seconds": {v: [r.first_seconds for r in rs] for v, rs in runs.items()}}
    for v in (n for n in names if "compile" in n):
        eager = v.split("+")[0]
        # Compile's cost: the first compiled run's warm-up beyond the eager warm-up (later runs hit caches).
        extra = runs[v][0].first_seconds - statistics.median(r.first_seconds for r in runs[eager])
        step_eager, step_comp = (1 / statistics.median(r.steps_per_second for r in runs[k]) for k in (eager, v))
        ratio = (extra + run_steps * step_comp) / (run_steps * step_eager)
        result["figures"] += [figure(f"{task} {v}: compile time (first warm-up beyond eager)", extra, "s"),
                              figure(f"{task} {v} / {eager}: time of a default run ({run_steps} steps)", ratio, "x",
                                     note="compile time included; < 1 means compiling wins")]
        details[f"{v}_default_run_ratio"] = ratio
    result["details"][task] = details


def run(settings: BenchSettings) -> dict[str, Any]:
    """Both peaks, then each task's variants."""
    from benchmarks.machine import peak_matmul_flops

    started = time.perf_counter()
    result = section("throughput", TITLE)
    n = settings.pick(full=2048, quick=2048, tiny=256) if settings.device == "cpu" else settings.pick(8192, 8192, 1024)
    peaks = {}
    for name, dtype in (("fp32", "float32"), ("bf16", "bfloat16")):
        samples = peak_matmul_flops(settings.device, dtype, n=n, repeats=settings.pick(5, 3, 2))
        result["figures"].append(figure(f"dense matmul peak, {name} {n}x{n}", samples, "FLOP/s"))
        peaks[name] = statistics.median(samples)
    for task in ("translation", "detection"):
        _measure_task(settings, task, peaks, result)
    result["notes"] += [
        "Lightning runs of the default config per variant (fp32 = trainer.precision=32-true, bf16 = bf16-mixed, "
        "+compile = compile.enabled=true: torch.compile of the task's compile_targets with inductor), repeats "
        "interleaved variant by variant; warm-up steps not timed.",
        "Utilisation: FlopCounterMode FLOPs of one training step (fp32 eager; matmul/conv/attention kernels only) x "
        "rate / the matmul peak of the variant's dtype measured in this run (MFU; it understates the work done).",
    ]
    result["seconds"] = time.perf_counter() - started
    return result
