"""Section 4: decoding speed — greedy and beam search, batched vs one sentence at a time.

The model is the default translation model (``model=seq2seq_attn``, default ``attention``) built
from the default data's vocabularies, UNTRAINED: an untrained decoder rarely emits ``eos``, so
every sentence decodes to its length budget. To keep that budget close to what a trained model
produces (targets about as long as their sources), decoding is capped at ``max_len_a * S +
max_len_b`` = ``S + 2`` tokens (the default is ``1.5 S + 10``), the same cap in every mode.

Sentences are validation sources. Batched decoding goes through ``TranslationTask.translate``
(tokenise, decode, detokenise) in batches of ``data.eval_batch_size`` over the sentences sorted by
length (as the evaluation loader sorts them); one-at-a-time decoding calls ``translate`` on one
sentence at a time, over every k-th sentence of the same sorted list (a similar length mix).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from attnlab.bench.report import figure, section, target
from attnlab.bench.settings import BenchSettings

__all__ = ["MAX_LEN_A", "MAX_LEN_B", "TARGET_BEAM_SPEEDUP", "TITLE", "run"]

TITLE = "4. Decoding (sentences/s)"
TARGET_BEAM_SPEEDUP = 5.0
MAX_LEN_A = 1.0
MAX_LEN_B = 2
BEAM = 5


def _sentences_per_second(task: Any, sentences: list[str], beam: int, batch_size: int, passes: int,
                          device: str) -> tuple[list[float], list[str]]:
    """``passes`` timed passes of ``translate`` over ``sentences``; sentences/s per pass and the outputs."""
    from attnlab.bench.timing import synchronize

    samples = []
    out: list[str] = []
    for _ in range(passes):
        synchronize(device)
        start = time.perf_counter()
        if batch_size == 1:
            out = [task.translate([s], beam_size=beam, batch_size=1)[0] for s in sentences]
        else:
            out = task.translate(sentences, beam_size=beam, batch_size=batch_size)
        synchronize(device)
        samples.append(len(sentences) / (time.perf_counter() - start))
    return samples, out


def run(settings: BenchSettings) -> dict[str, Any]:
    """Greedy and beam (5), batched vs one at a time; the batched-beam speed-up target."""
    import contextlib

    import torch

    from attnlab.bench.harness import prepare_job, quiet_lightning, tiny_overrides

    started = time.perf_counter()
    result = section("decoding", TITLE)
    overrides = tiny_overrides("translation", settings.workdir) if settings.tiny else []
    overrides += [f"model.max_len_a={MAX_LEN_A}", f"model.max_len_b={MAX_LEN_B}"]
    job = prepare_job("translation", device=settings.device, seed=settings.seed,
                      scratch=settings.scratch("decoding"), overrides=overrides)
    with quiet_lightning():
        task = job.build_task()
    task = task.to(settings.device).eval()
    batch_size = int(job.cfg.data.get("eval_batch_size") or job.cfg.data.batch_size)
    n_batched = settings.pick(full=1024, quick=256, tiny=32)
    n_single = settings.pick(full=64, quick=16, tiny=4)
    passes = settings.pick(full=3, quick=1, tiny=1)
    val = [src for src, _ in job.datamodule.pairs["val"]]
    sources = sorted((val * (1 + n_batched // max(len(val), 1)))[:n_batched], key=lambda s: (len(s.split()), s))
    step = max(1, len(sources) // n_single)
    singles = sources[::step][:n_single]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if settings.device == "cuda" \
        else contextlib.nullcontext()

    speedups: dict[str, float] = {}
    lengths: dict[str, float] = {}
    with torch.inference_mode(), autocast:
        task.translate(sources[:2], beam_size=BEAM, batch_size=2)  # warm-up: tokenizers, first kernels
        for name, beam in (("greedy", 1), (f"beam {BEAM}", BEAM)):
            batched, out = _sentences_per_second(task, sources, beam, batch_size, passes, settings.device)
            single, _ = _sentences_per_second(task, singles, beam, 1, passes, settings.device)
            lengths[name] = statistics.mean(len(t.split()) for t in out) if out else 0.0
            result["figures"] += [
                figure(f"{name}: batched (batch {batch_size})", batched, "sentences/s"),
                figure(f"{name}: one sentence at a time", single, "sentences/s"),
                figure(f"{name}: batched / one at a time", statistics.median(batched) / statistics.median(single),
                       "x"),
            ]
            speedups[name] = statistics.median(batched) / statistics.median(single)
    result["targets"].append(target(f"batched beam {BEAM} vs one at a time", ">=", TARGET_BEAM_SPEEDUP,
                                    speedups[f"beam {BEAM}"], "x"))
    src_len = statistics.mean(len(s.split()) for s in sources)
    single_len = statistics.mean(len(s.split()) for s in singles)
    result["notes"] += [
        f"Untrained default-size model (net {dict(job.cfg.model.net)}, attention {job.cfg.attention.kind}); "
        f"decoding capped at {MAX_LEN_A:g} * source tokens + {MAX_LEN_B} (default 1.5 S + 10) so that an "
        "untrained model, which rarely emits eos, decodes about as many tokens as a trained one would.",
        f"{len(sources)} validation sources sorted by length for batched decoding (mean {src_len:.1f} words); "
        f"{len(singles)} of them, evenly spread, one at a time (mean {single_len:.1f} words); "
        f"mean output length (words) greedy {lengths['greedy']:.1f}, beam {lengths[f'beam {BEAM}']:.1f}. "
        "Timed through TranslationTask.translate: tokenisation and detokenisation included.",
    ]
    result["details"] = {"batch_size": batch_size, "n_batched": len(sources), "n_single": len(singles),
                         "passes": passes, "speedups": speedups, "max_len_a": MAX_LEN_A, "max_len_b": MAX_LEN_B,
                         "threads": torch.get_num_threads()}
    result["seconds"] = time.perf_counter() - started
    return result
