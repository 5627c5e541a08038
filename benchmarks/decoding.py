"""Section 4: decoding speed -- greedy and beam search, batched vs one sentence at a time.

The default translation model, UNTRAINED: it rarely emits ``eos``, so decoding is capped at
``1.0 * S + 2`` tokens (the default is ``1.5 S + 10``) to decode about as many tokens as a trained
model. Sources are validation sentences (from the val loader) sorted by length; batched decoding
goes through ``TranslationTask.translate`` in batches of ``data.eval_batch_size``, one-at-a-time
decoding over every k-th of them. Tokenisation and detokenisation are included. On CUDA under
bf16 autocast.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

from benchmarks.report import figure, section, target
from benchmarks.settings import BenchSettings

TITLE = "4. Decoding (sentences/s)"
TARGET_BEAM_SPEEDUP = 5.0
MAX_LEN_A, MAX_LEN_B, BEAM = 1.0, 2, 5


def _rate(task: Any, sentences: list[str], beam: int, batch_size: int, passes: int, device: str) -> list[float]:
    from benchmarks.machine import time_repeats

    if batch_size == 1:
        fn = lambda: [task.translate([s], beam_size=beam, batch_size=1) for s in sentences]  # noqa: E731
    else:
        fn = lambda: task.translate(sentences, beam_size=beam, batch_size=batch_size)  # noqa: E731
    return [len(sentences) / s for s in time_repeats(fn, passes, warmup=0, device=device)]


def run(settings: BenchSettings) -> dict[str, Any]:
    """Greedy and beam 5, batched vs one at a time; the batched-beam speed-up target."""
    import torch

    from benchmarks.harness import prepare_job, tiny_overrides

    started = time.perf_counter()
    result = section("decoding", TITLE)
    overrides = (tiny_overrides("translation", settings.workdir) if settings.tiny else []) + \
        [f"model.max_len_a={MAX_LEN_A}", f"model.max_len_b={MAX_LEN_B}"]
    job = prepare_job("translation", device=settings.device, seed=settings.seed, scratch=settings.scratch("decoding"),
                      overrides=overrides)
    task = job.build_task().to(settings.device).eval()
    batch_size = int(job.cfg.data.get("eval_batch_size") or job.cfg.data.batch_size)
    n_batched, n_single = settings.pick(1024, 256, 32), settings.pick(64, 16, 4)
    passes = settings.pick(3, 1, 1)
    val = [s for batch in job.datamodule.val_dataloader() for s in batch["src_text"]]
    sources = sorted((val * (1 + n_batched // len(val)))[:n_batched], key=lambda s: (len(s.split()), s))
    singles = sources[:: max(1, len(sources) // n_single)][:n_single]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if settings.device == "cuda" else contextlib.nullcontext()
    speedups = {}
    with torch.inference_mode(), autocast:
        task.translate(sources[:2], beam_size=BEAM, batch_size=2)  # warm-up: tokenizers, first kernels
        for name, beam in (("greedy", 1), (f"beam {BEAM}", BEAM)):
            batched = _rate(task, sources, beam, batch_size, passes, settings.device)
            single = _rate(task, singles, beam, 1, passes, settings.device)
            speedups[name] = statistics.median(batched) / statistics.median(single)
            result["figures"] += [figure(f"{name}: batched (batch {batch_size})", batched, "sentences/s"),
                                  figure(f"{name}: one sentence at a time", single, "sentences/s"),
                                  figure(f"{name}: batched / one at a time", speedups[name], "x")]
    result["targets"].append(target(f"batched beam {BEAM} vs one at a time", ">=", TARGET_BEAM_SPEEDUP,
                                    speedups[f"beam {BEAM}"], "x"))
    result["notes"] += [
        f"Untrained default-size model (net {dict(job.cfg.model.net)}, attention {job.cfg.attention.kind}); decoding "
        f"capped at {MAX_LEN_A:g} * source tokens + {MAX_LEN_B} so an untrained model decodes about as many tokens as "
        "a trained one.",
        f"{len(sources)} validation sources sorted by length (mean "
        f"{statistics.mean(len(s.split()) for s in sources):.1f} "
        f"words) batched; {len(singles)} of them, evenly spread, one at a time. Through TranslationTask.translate.",
    ]
    result["details"] = {"batch_size": batch_size, "n_batched": len(sources), "n_single": len(singles),
                         "passes": passes, "speedups": speedups, "threads": torch.get_num_threads()}
    result["seconds"] = time.perf_counter() - started
    return result
