"""Section 4: greedy and beam search through ``TranslationTask.translate``, batched vs one sentence at a time, on
validation sentences. The model is untrained, so decoding is capped at ``1.0 * S + 2`` tokens (about what a trained
model emits)."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.harness import job_for
from benchmarks.machine import time_repeats
from benchmarks.report import compare, target, timed
from benchmarks.settings import BenchSettings

TITLE = "4. Decoding (sentences/s)"
TARGET_BEAM_SPEEDUP = 5.0
MAX_LEN_A, MAX_LEN_B, BEAM = 1.0, 2, 5


def _rate(task: Any, sentences: list[str], beam: int, batch_size: int, passes: int, device: str) -> list[float]:
    chunks = [[s] for s in sentences] if batch_size == 1 else [sentences]

    def decode() -> None:
        for chunk in chunks:
            task.translate(chunk, beam_size=beam, batch_size=batch_size)

    return [len(sentences) / s for s in time_repeats(decode, passes, warmup=0, device=device)]


@timed("decoding", TITLE)
def run(settings: BenchSettings, result: dict[str, Any]) -> None:
    """Greedy and beam 5, batched vs one at a time; the batched-beam speed-up target."""
    import torch

    job = job_for(settings, "translation", "decoding", [f"model.max_len_a={MAX_LEN_A}", f"model.max_len_b={MAX_LEN_B}"])
    task = job.build_task().to(settings.device).eval()
    batch_size = int(job.cfg.data.get("eval_batch_size") or job.cfg.data.batch_size)
    n_batched, n_single, passes = settings.pick(1024, 256, 32), settings.pick(64, 16, 4), settings.pick(3, 1, 1)
    val = [s for batch in job.datamodule.val_dataloader() for s in batch["src_text"]]
    sources = sorted((val * (1 + n_batched // len(val)))[:n_batched], key=lambda s: (len(s.split()), s))
    singles = sources[:: max(1, len(sources) // n_single)][:n_single]
    speedups, bf16 = {}, settings.device == "cuda"
    with torch.inference_mode(), torch.autocast(settings.device, dtype=torch.bfloat16, enabled=bf16):
        task.translate(sources[:2], beam_size=BEAM, batch_size=2)  # warm-up: tokenizers, first kernels
        for name, beam in (("greedy", 1), (f"beam {BEAM}", BEAM)):
            batched = _rate(task, sources, beam, batch_size, passes, settings.device)
            single = _rate(task, singles, beam, 1, passes, settings.device)
            names = (f"{name}: batched (batch {batch_size})", f"{name}: one sentence at a time")
            names += (f"{name}: batched / one at a time",)
            speedups[name] = compare(result, names, batched, single, "sentences/s", paired=False)
    speedup = speedups[f"beam {BEAM}"]
    result["targets"].append(target(f"batched beam {BEAM} vs one at a time", ">=", TARGET_BEAM_SPEEDUP, speedup, "x"))
    words = statistics.mean(len(s.split()) for s in sources)
    result["notes"].append(
        f"Untrained default-size model (net {dict(job.cfg.model.net)}, attention {job.cfg.attention.kind}); "
        f"{len(sources)} validation sources sorted by length (mean {words:.1f} words) batched, {len(singles)} of "
        "them, evenly spread, one at a time."
    )
    result["details"] = {"batch_size": batch_size, "n_batched": len(sources), "n_single": len(singles)}
    result["details"] |= {"passes": passes, "speedups": speedups, "threads": torch.get_num_threads()}
