"""Multi-head scaled dot-product attention (Vaswani et al., 2017).

``head_h = softmax((Q W_q^h)(K W_k^h)^T / sqrt(d)) (V W_v^h)``, then
``context = concat_h(head_h) W_o``.

Two paths that compute the same context:

* ``need_weights=False``: :func:`torch.nn.functional.scaled_dot_product_attention`,
  which dispatches to fused (flash / memory-efficient) kernels and never
  materialises the ``(B, heads, Tq, Tk)`` weights.
* ``need_weights=True``: an explicit softmax, so the weights can be returned
  (averaged over heads, like :class:`torch.nn.MultiheadAttention`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from attnlab.attention.base import Attention, broadcast_mask, masked_softmax

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(Attention):
    """Multi-head attention with learned query/key/value/output projections.

    Args:
        query_dim: ``Dq``. key_dim: ``Dk``.
        value_dim: ``Dv`` (default ``Dk``, since values default to keys).
        num_heads: number of heads; must divide the embedding size.
        dropout: dropout on the attention weights (training mode only).

    The embedding size -- the width of each projection and of the output -- is
    ``out_dim = value_dim if value_dim is not None else query_dim`` (as in the
    team contract): with an explicit ``value_dim`` the context has the values'
    size like every other kind; for self-attention (``Dq == Dk == Dv``) it is
    just ``D``. Each head has ``out_dim // num_heads`` features.

    Returned weights are the per-head softmax weights averaged over heads,
    ``(B, Tq, Tk)``. ``context`` is ``W_o`` applied to the per-head
    ``weights_h @ (V W_v^h)``; a batch element whose keys are all masked gets
    zero weights and a zero context (the output projection's bias is not
    added there either).
    """

    def __init__(
        self,
        query_dim: int,
        key_dim: int,
        value_dim: int | None = None,
        num_heads: int = 4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        embed_dim = int(value_dim) if value_dim is not None else self.query_dim
        num_heads = int(num_heads)
        if num_heads < 1 or embed_dim % num_heads:
            raise ValueError(
                f"multihead attention: num_heads={num_heads} must be >= 1 and divide the embedding "
                f"size {embed_dim} (= value_dim if given, else query_dim)"
            )
        self.out_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = float(dropout)
        self.q_proj = nn.Linear(self.query_dim, embed_dim)
        self.k_proj = nn.Linear(self.key_dim, embed_dim)
        self.v_proj = nn.Linear(self.value_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        self._reset_parameters()

    def _reset_parameters(self) -> None:
        # Same initialisation as torch.nn.MultiheadAttention, so swapping it for
        # this module does not change training dynamics.
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight)
            nn.init.zeros_(proj.bias)
        nn.init.zeros_(self.out_proj.bias)

    def _split_heads(self, x: Tensor) -> Tensor:
        """``(B, T, E)`` -> ``(B, heads, T, E / heads)``."""
        return x.view(x.size(0), x.size(1), self.num_heads, self.head_dim).transpose(1, 2)

    def _prepare(self, keys: Tensor, values: Tensor, mask: Tensor | None) -> dict[str, Tensor]:
        # Kept as (B, Tk, E): batch first, so PreparedKeys.index_select can repeat rows.
        return {"k": self.k_proj(keys), "v": self.v_proj(values)}

    def _attend(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None,
        need_weights: bool,
        cache: dict[str, Tensor],
    ) -> tuple[Tensor, Tensor | None]:
        batch, num_queries = query.size(0), query.size(1)
        q = self._split_heads(self.q_proj(query))  # (B, h, Tq, d)
        k = self._split_heads(cache["k"] if cache else self.k_proj(keys))  # (B, h, Tk, d)
        v = self._split_heads(cache["v"] if cache else self.v_proj(values))  # (B, h, Tk, d)
        dropout_p = self.dropout if self.training else 0.0

        # Batch elements with no attendable key at all: their context is zeroed below.
        empty = None if mask is None else ~mask.any(dim=-1)  # (B,)
        weights = None
        if need_weights:
            scores = torch.matmul(q * (1.0 / math.sqrt(self.head_dim)), k.transpose(-2, -1))  # (B, h, Tq, Tk)
            per_head = masked_softmax(scores, mask)
            used = F.dropout(per_head, p=dropout_p) if dropout_p > 0 else per_head
            heads = torch.matmul(used, v)  # (B, h, Tq, d)
            weights = per_head.mean(dim=1)  # (B, Tq, Tk)
        else:
            attn_mask = None
            if mask is not None and empty is not None:  # empty is set whenever mask is
                # SDPA turns a fully masked row into NaN (or garbage, depending on the
                # kernel); let such rows attend everywhere -- their output is zeroed anyway.
                attn_mask = broadcast_mask(mask | empty.unsqueeze(-1), q)  # (B, 1, 1, Tk)
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)

        context = self.out_proj(heads.transpose(1, 2).reshape(batch, num_queries, self.out_dim))
        if empty is not None:
            # masked_fill (not multiplication) so a NaN could never leak in, and the
            # gradient into these rows is exactly zero.
            context = context.masked_fill(empty.view(batch, 1, 1), 0.0)
        return context, weights

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_heads={self.num_heads}, dropout={self.dropout}"
