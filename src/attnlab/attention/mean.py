"""The ``none`` baseline: a (masked) mean over the keys, ignoring the query.

It answers "does attention help at all?": every query gets the same context,
the average of the unmasked values. It has no parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from attnlab.attention.base import Attention, masked_uniform

__all__ = ["MeanAttention"]


class MeanAttention(Attention):
    """Masked mean over keys; weights are uniform over the unmasked keys.

    ``out_dim == Dv``. A batch element whose keys are all masked gets zero
    weights and zero context. There is no dropout: there are no learned
    scores to regularise (a ``dropout`` option given to the factory is ignored).
    """

    def _prepare(self, keys: Tensor, values: Tensor, mask: Tensor | None) -> dict[str, Tensor]:
        weights = masked_uniform(mask, keys.size(0), keys.size(1), dtype=values.dtype, device=values.device)
        return {"weights": weights, "mean": torch.bmm(weights, values)}  # (B, 1, Tk), (B, 1, Dv)

    def _attend(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None,
        need_weights: bool,
        cache: dict[str, Tensor],
    ) -> tuple[Tensor, Tensor | None]:
        batch, num_queries, num_keys = query.size(0), query.size(1), keys.size(1)
        # The mean is the same for every query: compute it once (or take it from prepare()), then broadcast.
        if not cache:
            cache = self._prepare(keys, values, mask)
        weights = cache["weights"]  # (B, 1, Tk)
        context = cache["mean"].expand(batch, num_queries, values.size(-1)).contiguous()
        if not need_weights:
            return context, None
        # Materialised (not an expand view) so callers may modify it like any other kind's weights.
        return context, weights.expand(batch, num_queries, num_keys).contiguous()
