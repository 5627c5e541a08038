"""Additive (Bahdanau) attention, computed in memory-bounded tiles.

``score(q_i, k_j) = v . tanh(W_q q_i + W_k k_j)``

The naive implementation broadcasts ``(B, Tq, 1, H) + (B, 1, Tk, H)`` and so
materialises -- and, for backward, *saves* -- a ``(B, Tq, Tk, H)`` tensor: 8 GiB
for one 4096 x 4096 self-attention with ``H = 128``. Here the score matrix is
computed tile by tile (a block of queries, and if necessary a block of keys),
and each tile runs under :func:`torch.utils.checkpoint.checkpoint`, so autograd
keeps only the tile's small inputs and recomputes its ``tanh`` during backward.
Peak memory is then ``O(B*Tq*Tk + tile)`` instead of ``O(B*Tq*Tk*H)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from attnlab.attention.base import ScoredAttention

__all__ = ["AdditiveAttention", "DEFAULT_TILE_BUDGET"]

#: Default cap on the elements of one ``(B, q_chunk, k_chunk, H)`` tile (2^24
#: float32 = 64 MiB; backward holds a few such buffers at once).
DEFAULT_TILE_BUDGET = 2**24


def _additive_tile(query_proj: Tensor, key_proj: Tensor, v: Tensor) -> Tensor:
    """Scores for one tile.

    Args:
        query_proj: ``(B, cq, H)`` = ``W_q q + b`` for a block of queries.
        key_proj: ``(B, ck, H)`` = ``W_k k`` for a block of keys.
        v: ``(H,)`` energy vector.

    Returns:
        ``(B, cq, ck)`` scores.
    """
    # In-place tanh: the add's backward does not need its output, so reusing the
    # buffer halves the tile's peak without changing gradients.
    energy = (query_proj.unsqueeze(2) + key_proj.unsqueeze(1)).tanh_()  # (B, cq, ck, H)
    return energy.matmul(v)


class AdditiveAttention(ScoredAttention):
    """Bahdanau attention ``softmax(v . tanh(W_q q + W_k k)) @ values``.

    Args:
        query_dim: ``Dq``. key_dim: ``Dk``. value_dim: ``Dv`` (default ``Dk``).
        hidden_dim: ``H``, the size of the shared tanh space.
        chunk_size: queries per tile. ``None`` (default) picks tiles
            automatically so one tile holds at most ``tile_budget`` elements
            (``B * q_chunk * k_chunk * H``, the batch included because memory
            scales with it); keys are tiled too when even one query row exceeds
            the budget. An explicit ``chunk_size`` tiles queries only, and
            ``chunk_size >= Tq`` gives the plain, un-tiled computation.
        dropout: dropout on the attention weights (training mode only).
        tile_budget: element cap for automatic tiling.

    ``out_dim == Dv``. Shapes are as in :class:`~attnlab.attention.base.Attention`.
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        value_dim: int | None = None,
        hidden_dim: int = 128,
        chunk_size: int | None = None,
        dropout: float = 0.0,
        tile_budget: int = DEFAULT_TILE_BUDGET,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim, dropout=dropout)
        self.hidden_dim = int(hidden_dim)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.tile_budget = int(tile_budget)
        # One bias is enough: a bias on both projections would be redundant.
        self.query_proj = nn.Linear(self.query_dim, self.hidden_dim, bias=True)
        self.key_proj = nn.Linear(self.key_dim, self.hidden_dim, bias=False)
        # No bias on v: softmax is invariant to a constant shift of the scores.
        self.energy = nn.Linear(self.hidden_dim, 1, bias=False)

    def tile_sizes(self, batch: int, num_queries: int, num_keys: int) -> tuple[int, int]:
        """Queries and keys per tile for inputs of this size: ``(q_chunk, k_chunk)``."""
        if self.chunk_size is not None:
            return min(self.chunk_size, num_queries), num_keys
        per_query = batch * num_keys * self.hidden_dim
        if per_query <= self.tile_budget:
            return max(1, min(num_queries, self.tile_budget // per_query)), num_keys
        # A single query row over all keys is already too big: tile the keys as well.
        return 1, max(1, min(num_keys, self.tile_budget // (batch * self.hidden_dim)))

    def _prepare(self, keys: Tensor, values: Tensor, mask: Tensor | None) -> dict[str, Tensor]:
        return {"key_proj": self.key_proj(keys)}  # (B, Tk, H)

    def score(self, query: Tensor, keys: Tensor, cache: dict[str, Tensor] | None = None) -> Tensor:
        """query ``(B, Tq, Dq)``, keys ``(B, Tk, Dk)`` -> scores ``(B, Tq, Tk)``; ``cache`` may hold
        ``key_proj`` ``(B, Tk, H)`` from :meth:`prepare` (a decoder step then skips ``W_k k``)."""
        # Project once (O(B*T*H)), not once per tile.
        query_proj = self.query_proj(query)  # (B, Tq, H)
        key_proj = cache["key_proj"] if cache else self.key_proj(keys)  # (B, Tk, H)
        v = self.energy.weight.view(-1)  # (H,)
        batch, num_queries, num_keys = query.size(0), query.size(1), keys.size(1)
        q_chunk, k_chunk = self.tile_sizes(batch, num_queries, num_keys)
        if q_chunk >= num_queries and k_chunk >= num_keys:
            # One tile: nothing to bound (e.g. a decoder step with Tq = 1), so skip
            # checkpointing and its recomputation.
            return _additive_tile(query_proj, key_proj, v)

        # Checkpoint only when a graph is being recorded; under no_grad it would be pure overhead.
        recompute = torch.is_grad_enabled() and any(t.requires_grad for t in (query_proj, key_proj, v))
        # split() (one backward node that concatenates gradients) rather than
        # slicing (a full-size zero gradient per slice). The tile is deterministic,
        # so checkpoint need not save/restore RNG state (preserve_rng_state=False).
        key_blocks = key_proj.split(k_chunk, dim=1)
        rows = []
        for q_block in query_proj.split(q_chunk, dim=1):
            tiles = [
                checkpoint(_additive_tile, q_block, k_block, v, use_reentrant=False, preserve_rng_state=False)
                if recompute
                else _additive_tile(q_block, k_block, v)
                for k_block in key_blocks
            ]
            rows.append(tiles[0] if len(tiles) == 1 else torch.cat(tiles, dim=2))
        return torch.cat(rows, dim=1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", hidden_dim={self.hidden_dim}, chunk_size={self.chunk_size}"
