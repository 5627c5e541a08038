"""Luong (multiplicative) attention: ``dot`` and ``general``.

* dot:     ``score(q, k) = q . k``        (requires ``Dq == Dk``)
* general: ``score(q, k) = (W q) . k``    with ``W: Dq -> Dk``

Following Luong et al. (2015) the scores are **not** scaled by ``1/sqrt(d)``
(that is the Transformer's choice, used by the ``multihead`` kind). With large
feature sizes unscaled scores give peaky softmaxes; that is part of what a sweep
over kinds compares, so it is deliberately left as published.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.attention.base import ScoredAttention

__all__ = ["DotAttention", "GeneralAttention"]


class DotAttention(ScoredAttention):
    """Luong dot attention ``softmax(q . k) @ values`` (unscaled); ``out_dim == Dv``.

    Args:
        query_dim: ``Dq``; must equal ``key_dim``.
        key_dim: ``Dk``. value_dim: ``Dv`` (default ``Dk``).
        dropout: dropout on the attention weights (training mode only).

    Raises:
        ValueError: if ``query_dim != key_dim`` (use ``general`` for that).
    """

    def __init__(self, query_dim: int, key_dim: int, value_dim: int | None = None, dropout: float = 0.0) -> None:
        if int(query_dim) != int(key_dim):
            raise ValueError(
                f"dot attention needs query_dim == key_dim, got {query_dim} and {key_dim}; "
                "use kind 'general' (learned W: Dq -> Dk) or 'additive' for different sizes"
            )
        super().__init__(query_dim, key_dim, value_dim, dropout=dropout)

    def score(self, query: Tensor, keys: Tensor, cache: dict[str, Tensor] | None = None) -> Tensor:
        """query ``(B, Tq, D)``, keys ``(B, Tk, D)`` -> ``(B, Tq, Tk)``; no key-side work to cache."""
        return torch.bmm(query, keys.transpose(1, 2))


class GeneralAttention(ScoredAttention):
    """Luong general attention ``softmax((W q) . k) @ values`` (unscaled); ``out_dim == Dv``.

    Args:
        query_dim: ``Dq``. key_dim: ``Dk``. value_dim: ``Dv`` (default ``Dk``).
        dropout: dropout on the attention weights (training mode only).
    """

    def __init__(self, query_dim: int, key_dim: int, value_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__(query_dim, key_dim, value_dim, dropout=dropout)
        # Projecting the queries (Tq of them) rather than the keys: in decoding Tq = 1
        # per step while the keys are reused, so this is the cheaper side.
        self.query_proj = nn.Linear(self.query_dim, self.key_dim, bias=False)

    def score(self, query: Tensor, keys: Tensor, cache: dict[str, Tensor] | None = None) -> Tensor:
        """query ``(B, Tq, Dq)``, keys ``(B, Tk, Dk)`` -> ``(B, Tq, Tk)``; no key-side work to cache."""
        return torch.bmm(self.query_proj(query), keys.transpose(1, 2))
