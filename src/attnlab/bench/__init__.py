"""``scripts/bench.py``: how fast attnlab trains, attends, decodes, evaluates and starts.

One module per section, each exposing ``TITLE`` and ``run(settings) -> dict`` (a section result,
see :mod:`attnlab.bench.report`):

    overhead     Lightning + TranslationTask/DetectionTask vs a plain PyTorch loop (steps/s, ratio)
    attention    every attention kind, forward+backward, time and peak RSS per case in a subprocess
    throughput   training tokens/s and images/s, achieved FLOP/s vs the machine's matmul peak
    decoding     greedy / beam search sentences/s, batched vs one sentence at a time
    evaluation   COCO evaluation time per backend (shared fixture, synthetic 1000-image set)
    startup      train.py --help / --cfg job wall time, process start -> first training step
    sweep        a 2-job sweep one job after the other vs two at once (hydra/launcher=joblib)
    data         corpus token store at full size: cold build, warm setup, peak RSS; training steps/s
    data_coco    COCO-2017-sized annotations: first/warm setup vs pycocotools, PSS with workers
                 (temporary key: the COCO half of the ``data`` section, joined with translation's later)

Importing this package is cheap (no torch); sections import what they need when they run.
"""

from __future__ import annotations

#: Section keys in the order they run and are reported.
SECTIONS: tuple[str, ...] = (
    "overhead", "attention", "throughput", "decoding", "evaluation", "startup", "sweep", "data", "data_coco",
)

__all__ = ["SECTIONS"]
