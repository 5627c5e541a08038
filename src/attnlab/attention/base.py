"""The attention interface shared by every scoring, plus the masking helpers.

Shape legend used throughout the package:

* ``B``  batch size
* ``Tq`` number of queries (decoder steps, or feature-map positions)
* ``Tk`` number of keys / values (encoder steps, or feature-map positions)
* ``Dq``, ``Dk``, ``Dv`` feature sizes of query, keys and values

Every module takes ``query (B, Tq, Dq)``, ``keys (B, Tk, Dk)``, optional
``values (B, Tk, Dv)`` (defaulting to ``keys``) and an optional boolean
``mask (B, Tk)`` that is ``True`` where a key may be attended, and returns
``context (B, Tq, out_dim)`` and ``weights (B, Tq, Tk)``.

When the same keys are attended by many separate queries (a decoder attends the encoder states
once per output step), :meth:`Attention.prepare` does the key-side work once -- the key/value
projections of ``additive`` and ``multihead``, the mean of ``none`` -- and the returned
:class:`PreparedKeys` is passed in place of ``keys`` on every call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["Attention", "PreparedKeys", "ScoredAttention", "broadcast_mask", "masked_softmax", "masked_uniform"]


@dataclass
class PreparedKeys:
    """Keys, values and mask with one attention block's key-side work already done.

    Made by :meth:`Attention.prepare`; valid only for the block that made it (and its current weights).

    Attributes:
        keys: ``(B, Tk, Dk)``. values: ``(B, Tk, Dv)``. mask: ``(B, Tk)`` bool or None.
        cache: kind-specific tensors with batch first (e.g. additive's ``W_k k`` ``(B, Tk, H)``).
        owner: ``id()`` of the block that made it, to catch passing it to another block.
    """

    keys: Tensor
    values: Tensor
    mask: Tensor | None
    cache: dict[str, Tensor] = field(default_factory=dict)
    owner: int = 0

    def index_select(self, index: Tensor) -> PreparedKeys:
        """Rows ``index`` (N,) of every tensor, e.g. to repeat each sentence over beams."""
        pick = lambda t: t.index_select(0, index)  # noqa: E731
        return PreparedKeys(
            pick(self.keys),
            pick(self.values),
            None if self.mask is None else pick(self.mask),
            {name: pick(t) for name, t in self.cache.items()},
            self.owner,
        )


def broadcast_mask(mask: Tensor, scores: Tensor) -> Tensor:
    """View a key mask so that it broadcasts against a score tensor.

    Args:
        mask: ``(B, Tk)`` bool, True where a key may be attended.
        scores: ``(B, ..., Tk)`` e.g. ``(B, Tq, Tk)`` or ``(B, heads, Tq, Tk)``.

    Returns:
        ``(B, 1, ..., 1, Tk)`` bool view of ``mask`` (no copy).
    """
    return mask.view(mask.size(0), *([1] * (scores.dim() - 2)), mask.size(-1))


def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """Softmax over the last (key) axis that gives masked keys exactly zero weight.

    A row whose keys are all masked comes out as all zeros rather than NaN, and
    its gradient is zero rather than NaN: we fill masked scores with the
    dtype's most negative *finite* value (``-inf`` would make an all-masked row
    ``exp(-inf - -inf) = NaN``), so the softmax is always finite, and then zero
    the masked entries explicitly. That last step is what makes masked weights
    exactly 0 and all-masked rows exactly 0 (the finite fill alone would give
    such a row a uniform distribution).

    Args:
        scores: ``(B, ..., Tk)`` unnormalised attention scores.
        mask: ``(B, Tk)`` bool, True where a key may be attended, or None.

    Returns:
        ``(B, ..., Tk)`` weights in the scores' dtype (computed in float32 at least); each row
        sums to 1 over its unmasked keys, or is all zeros when every key is masked.
    """
    # In float32 at least, whatever the scores' dtype (bf16 under autocast, which would otherwise
    # run it in bf16 on CPU): the exp and the normalising sum need the precision.
    wide = torch.promote_types(scores.dtype, torch.float32)
    if mask is None:
        return scores.softmax(dim=-1, dtype=wide).to(scores.dtype)
    keep = broadcast_mask(mask, scores)
    filled = scores.masked_fill(~keep, torch.finfo(scores.dtype).min)
    return filled.softmax(dim=-1, dtype=wide).to(scores.dtype).masked_fill(~keep, 0.0)


def masked_uniform(
    mask: Tensor | None, batch: int, num_keys: int, *, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Uniform weights over the unmasked keys (the ``none`` baseline's weights).

    Args:
        mask: ``(B, Tk)`` bool or None (every key attended).
        batch: ``B``; num_keys: ``Tk``.

    Returns:
        ``(B, 1, Tk)`` weights: ``1 / #unmasked`` on unmasked keys, 0 elsewhere,
        all zeros for a batch element whose keys are all masked.
    """
    if mask is None:
        return torch.full((batch, 1, num_keys), 1.0 / num_keys, dtype=dtype, device=device)
    keep = mask.to(dtype)
    # clamp(min=1) turns the 0/0 of an all-masked row into 0/1 = 0, not NaN.
    return (keep / keep.sum(dim=-1, keepdim=True).clamp(min=1.0)).unsqueeze(1)


class Attention(nn.Module):
    """Base class of every attention block: one call signature, validated once.

    Subclasses implement :meth:`_attend`; :meth:`forward` checks shapes, fills in
    the ``values`` default, and then dispatches, so every kind rejects bad input
    with the same messages.

    Attributes:
        query_dim: ``Dq``.  key_dim: ``Dk``.  value_dim: ``Dv`` (``Dk`` when the
        constructor got ``value_dim=None``, because values then default to keys).
        out_dim: feature size of the returned context.
    """

    def __init__(self, query_dim: int, key_dim: int, value_dim: int | None = None) -> None:
        super().__init__()
        self.query_dim = int(query_dim)
        self.key_dim = int(key_dim)
        self.value_dim = int(key_dim if value_dim is None else value_dim)
        # Most kinds return a weighted sum of the values; multihead overrides this.
        self.out_dim: int = self.value_dim

    def forward(
        self,
        query: Tensor,
        keys: Tensor | PreparedKeys,
        values: Tensor | None = None,
        mask: Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Attend from every query to the (unmasked) keys.

        Args:
            query: ``(B, Tq, Dq)``.
            keys: ``(B, Tk, Dk)``, or a :class:`PreparedKeys` from :meth:`prepare` (which
                carries the values and mask: then ``values`` and ``mask`` must be None).
            values: ``(B, Tk, Dv)``; defaults to ``keys``.
            mask: ``(B, Tk)`` bool, True where a key may be attended; None = all.
            need_weights: when False the weights are not returned (None), which
                lets some kinds take a faster path.

        Returns:
            ``context (B, Tq, out_dim)`` and ``weights (B, Tq, Tk)`` (or None).
            Masked keys get exactly zero weight; a batch element whose keys are
            all masked gets zero weights and zero context.
        """
        if isinstance(keys, PreparedKeys):
            prepared = keys
            if values is not None or mask is not None:
                raise ValueError(
                    f"{type(self).__name__}: keys were prepared with their values and mask; "
                    "pass values=None and mask=None with them"
                )
            if prepared.owner != id(self):
                raise ValueError(
                    f"{type(self).__name__}: these PreparedKeys were made by another attention "
                    "block; call prepare() on the block that uses them"
                )
            self._check_query(query, prepared.keys)
            return self._attend(query, prepared.keys, prepared.values, prepared.mask, need_weights, prepared.cache)
        if values is None:
            values = keys
        self._check_inputs(query, keys, values, mask)
        return self._attend(query, keys, values, mask, need_weights, {})

    def prepare(self, keys: Tensor, values: Tensor | None = None, mask: Tensor | None = None) -> PreparedKeys:
        """Do the key-side work once for keys that many separate queries will attend.

        Args:
            keys: ``(B, Tk, Dk)``. values: ``(B, Tk, Dv)``, defaults to ``keys``. mask: ``(B, Tk)`` or None.

        Returns:
            :class:`PreparedKeys` to pass as ``keys`` to this block; results equal the unprepared call.
        """
        if values is None:
            values = keys
        probe = keys.new_empty(keys.size(0), 1, self.query_dim)
        self._check_inputs(probe, keys, values, mask)
        return PreparedKeys(keys, values, mask, self._prepare(keys, values, mask), id(self))

    def _prepare(self, keys: Tensor, values: Tensor, mask: Tensor | None) -> dict[str, Tensor]:
        """Kind-specific key-side tensors (batch first) that :meth:`_attend` reuses; none by default."""
        return {}

    def _attend(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None,
        need_weights: bool,
        cache: dict[str, Tensor],
    ) -> tuple[Tensor, Tensor | None]:
        """Kind-specific computation; inputs are already validated (see :meth:`forward`).
        ``cache`` holds what :meth:`_prepare` computed, or is empty when the keys were not prepared."""
        raise NotImplementedError

    def _check_query(self, query: Tensor, keys: Tensor) -> None:
        name = type(self).__name__
        if query.dim() != 3 or query.size(-1) != self.query_dim:
            raise ValueError(f"{name}: query must have shape (B, T, {self.query_dim}), got {tuple(query.shape)}")
        if query.size(0) != keys.size(0):
            raise ValueError(
                f"{name}: batch sizes differ: query {tuple(query.shape)}, prepared keys {tuple(keys.shape)}"
            )

    def _check_inputs(self, query: Tensor, keys: Tensor, values: Tensor, mask: Tensor | None) -> None:
        # Shape errors deep inside a matmul are cryptic; name the offending tensor here.
        name = type(self).__name__
        for label, t, dim in (
            ("query", query, self.query_dim),
            ("keys", keys, self.key_dim),
            ("values", values, self.value_dim),
        ):
            if t.dim() != 3 or t.size(-1) != dim:
                raise ValueError(f"{name}: {label} must have shape (B, T, {dim}), got {tuple(t.shape)}")
        if not (query.size(0) == keys.size(0) == values.size(0)):
            raise ValueError(
                f"{name}: batch sizes differ: query {tuple(query.shape)}, "
                f"keys {tuple(keys.shape)}, values {tuple(values.shape)}"
            )
        if keys.size(1) != values.size(1):
            raise ValueError(
                f"{name}: keys {tuple(keys.shape)} and values {tuple(values.shape)} "
                "must have the same number of positions"
            )
        if mask is not None:
            if mask.dtype != torch.bool:
                raise ValueError(f"{name}: mask must be a bool tensor (True = may attend), got {mask.dtype}")
            if tuple(mask.shape) != (keys.size(0), keys.size(1)):
                raise ValueError(
                    f"{name}: mask must have shape (B, Tk) = {(keys.size(0), keys.size(1))}, got {tuple(mask.shape)}"
                )

    def extra_repr(self) -> str:
        return f"query_dim={self.query_dim}, key_dim={self.key_dim}, value_dim={self.value_dim}, out_dim={self.out_dim}"


class ScoredAttention(Attention):
    """Attention of the form ``softmax(score(q, k)) @ values``.

    Subclasses implement :meth:`score`; masking, dropout and the weighted sum
    are shared, so ``context == weights @ values`` holds exactly in eval mode.
    """

    def __init__(self, query_dim: int, key_dim: int, value_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__(query_dim, key_dim, value_dim)
        self.dropout = float(dropout)

    def score(self, query: Tensor, keys: Tensor, cache: dict[str, Tensor] | None = None) -> Tensor:
        """Unnormalised scores: query ``(B, Tq, Dq)``, keys ``(B, Tk, Dk)`` -> ``(B, Tq, Tk)``.
        ``cache``: this block's prepared key-side tensors, if any (see :meth:`Attention.prepare`)."""
        raise NotImplementedError

    def _attend(
        self,
        query: Tensor,
        keys: Tensor,
        values: Tensor,
        mask: Tensor | None,
        need_weights: bool,
        cache: dict[str, Tensor],
    ) -> tuple[Tensor, Tensor | None]:
        weights = masked_softmax(self.score(query, keys, cache), mask)  # (B, Tq, Tk)
        # Dropout regularises which keys are used; it only acts in training mode
        # (F.dropout is the identity when training=False). Callers get the
        # un-dropped distribution: it is what plots and alignment metrics want.
        used = F.dropout(weights, p=self.dropout, training=self.training) if self.dropout > 0 else weights
        context = torch.bmm(used, values)  # (B, Tq, Dv); an all-masked row has zero weights -> zero context
        return context, (weights if need_weights else None)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", dropout={self.dropout}"
