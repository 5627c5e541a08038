"""Lightning's mixed-precision plugin with autocast's weight cache on.

Why: Lightning 2.6 runs every step under ``torch.autocast(..., cache_enabled=False)`` (a workaround
for Lightning #20644: a weight first cast inside a nested ``no_grad`` would be cached without its
gradient history). Without the cache, every call of a layer re-casts its weights to bf16; the
translation decoder calls its layers once per target token, so on this project's CPU bf16-mixed
trained no faster than float32 under the Trainer, while the same steps in a plain loop (cache on,
torch's default) ran 1.13x faster (``scripts/bench.py --sections overhead``). Lightning #21611 /
#21616 restore the cache upstream after 2.6.6. The tasks never cast a weight under a nested
``no_grad`` inside a training step (``tests/test_mixed_precision.py`` checks that every parameter
gets its gradient), so the cache is safe here.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager

import torch
from pytorch_lightning.plugins.precision import MixedPrecision

__all__ = ["CachedMixedPrecision"]


class CachedMixedPrecision(MixedPrecision):
    """``MixedPrecision`` whose steps run under autocast with its weight cache (cleared as each step's
    autocast region ends, so weights updated by the optimizer are cast afresh)."""

    @contextmanager
    def forward_context(self) -> Generator[None, None, None]:
        dtype = torch.bfloat16 if self.precision == "bf16-mixed" else torch.half
        with torch.autocast(self.device, dtype=dtype, cache_enabled=True):
            yield
