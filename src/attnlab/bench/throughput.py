"""Section 3: training throughput and utilisation at the default configs.

* Translation: target tokens/s (non-pad ``tgt_out``), source tokens/s and sentence pairs/s of
  ``trainer.fit`` (the Lightning runs of section 1 when it ran with the default config in the same
  invocation, otherwise runs of its own).
* Detection: images/s, the same way.
* Utilisation: model FLOPs of a training step (forward + backward) counted with
  ``torch.utils.flop_counter.FlopCounterMode`` on the first batches of the same loader, per target
  token / per image, times the measured rate, divided by the machine's dense matmul FLOP/s measured
  in the same run (fp32; on CUDA also bf16, the precision autocast trains in).

FlopCounterMode counts matmuls and convolutions (and attention kernels), not element-wise work, so
this is the usual "model FLOPs utilisation" (MFU) and understates the arithmetic actually done.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from attnlab.bench.report import figure, section
from attnlab.bench.settings import BenchSettings

__all__ = ["TITLE", "count_step_flops", "run"]

TITLE = "3. Training throughput and utilisation"


def count_step_flops(job: Any, batches: int = 1) -> tuple[float, int, int]:
    """Matmul/conv FLOPs of forward + backward over the first ``batches`` training batches.

    Returns ``(flops, target tokens, items)`` summed over those batches (tokens are 0 for detection).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from attnlab.bench.harness import to_device, quiet_lightning

    with quiet_lightning():
        model = job.build_task().to(job.device).train()
    flops, tokens, items = 0.0, 0, 0
    loader = job.train_loader()
    for i, batch in enumerate(loader):
        if i >= batches:
            break
        batch = to_device(batch, job.device)
        with FlopCounterMode(display=False) as counter:
            with job.autocast():
                loss = job.loss(model, batch)
            loss.backward()
        model.zero_grad(set_to_none=True)
        flops += float(counter.get_total_flops())
        n, tok, _ = job.count(batch)
        items += n
        tokens += int(tok) if isinstance(tok, torch.Tensor) else int(tok)
    return flops, tokens, items


def _plan(settings: BenchSettings, task: str) -> tuple[int, int, int]:
    """(steps, warm-up, repeats) of throughput runs when section 1's runs are not available."""
    if task == "translation":
        return settings.pick(full=(40, 5, 3), quick=(5, 1, 1), tiny=(3, 1, 1))
    return settings.pick(full=(20, 3, 3), quick=(3, 1, 1), tiny=(3, 1, 1))


def run(settings: BenchSettings) -> dict[str, Any]:
    """Peak matmul FLOP/s, then each task's rate and utilisation."""
    from attnlab.bench.harness import prepare_job, run_lightning, tiny_overrides
    from attnlab.bench.machine import peak_matmul_flops

    started = time.perf_counter()
    result = section("throughput", TITLE)
    if settings.device == "cuda":
        n = settings.pick(full=8192, quick=8192, tiny=1024)
    else:
        n = settings.pick(full=2048, quick=2048, tiny=256)
    repeats = settings.pick(full=5, quick=3, tiny=2)
    peak_fp32 = peak_matmul_flops(settings.device, "float32", n=n, repeats=repeats)
    result["figures"].append(figure(f"dense matmul peak, fp32 {n}x{n}", peak_fp32, "FLOP/s"))
    peak = statistics.median(peak_fp32)
    peak_name = "fp32"
    if settings.device == "cuda":
        peak_bf16 = peak_matmul_flops(settings.device, "bfloat16", n=n, repeats=repeats)
        result["figures"].append(figure(f"dense matmul peak, bf16 {n}x{n}", peak_bf16, "FLOP/s"))
        peak, peak_name = statistics.median(peak_bf16), "bf16"

    for task in ("translation", "detection"):
        shared = settings.shared.get(("lightning_runs", task))
        if shared is not None:
            job, runs = shared
            source = "section 1's Lightning runs"
        else:
            steps, warmup, reps = _plan(settings, task)
            overrides = tiny_overrides(task, settings.workdir) if settings.tiny else []
            job = prepare_job(task, device=settings.device, seed=settings.seed,
                              scratch=settings.scratch(f"throughput_{task}"), overrides=overrides)
            runs = [run_lightning(job, steps, warmup) for _ in range(reps)]
            source = f"{reps} run(s) of {steps} steps ({warmup} warm-up)"
        flop_batches = settings.pick(full=3, quick=1, tiny=1)
        flops, flop_tokens, flop_items = count_step_flops(job, flop_batches)
        if task == "translation":
            rates = [r.tokens / r.seconds for r in runs]
            result["figures"] += [
                figure("translation: training target tokens/s", rates, "tokens/s"),
                figure("translation: training source tokens/s", [r.src_tokens / r.seconds for r in runs],
                       "tokens/s"),
                figure("translation: training sentence pairs/s", [r.items / r.seconds for r in runs], "pairs/s"),
            ]
            per_unit = flops / max(flop_tokens, 1)
            result["figures"].append(figure("translation: model FLOPs per target token (fwd+bwd)", per_unit,
                                            "FLOP"))
        else:
            rates = [r.items / r.seconds for r in runs]
            result["figures"].append(figure("detection: training images/s", rates, "images/s"))
            per_unit = flops / max(flop_items, 1)
            result["figures"].append(figure("detection: model FLOPs per image (fwd+bwd)", per_unit, "FLOP"))
        achieved = [per_unit * r for r in rates]
        result["figures"].append(figure(f"{task}: achieved model FLOP/s", achieved, "FLOP/s"))
        result["figures"].append(figure(f"{task}: utilisation (achieved / {peak_name} matmul peak)",
                                        [a / peak for a in achieved], "ratio"))
        result["details"][task] = {
            "source": source,
            "batch_size": job.cfg.data.get("batch_size"),
            "flop_batches": flop_batches,
            "flops_counted": flops,
            "tokens_counted": flop_tokens,
            "items_counted": flop_items,
            "timed_steps_per_run": [r.timed_steps for r in runs],
        }
        result["notes"].append(f"{task}: rate from {source}; batch size {job.cfg.data.get('batch_size')}.")
    result["notes"].append(
        "FLOPs counted by torch.utils.flop_counter.FlopCounterMode over forward+backward of the first training "
        "batch(es) (matmul/conv/attention kernels only, the optimizer and element-wise work not counted); "
        f"peak = median of {repeats} fp32 {n}x{n} matmuls in this run."
    )
    result["seconds"] = time.perf_counter() - started
    return result
