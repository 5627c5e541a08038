"""Self-attention over the positions of a CNN feature map.

Every position of a ``(B, C, H, W)`` feature map becomes a query that attends to
every position of the same map (``Tq = Tk = H * W``) through the project's shared
attention block (:func:`attnlab.attention.build_attention`), so the scoring
(additive, dot, general, multihead) is whatever the experiment chose. A fixed 2-D
sinusoidal positional encoding is added to queries and keys (not to the values),
as in DETR's encoder, so that scores can depend on where positions are while the
aggregated content stays pure appearance. The context goes through a linear
projection back to ``C`` channels and is added to the input (residual), followed
(or preceded, ``norm_first``) by a LayerNorm over channels or a GroupNorm.

Cost: ``Tq * Tk = (H W)^2`` scores per image, so this is meant for coarse levels
(stride 16 or 32); additive attention chunks its ``(B, Tq, Tk, hidden)`` tensor
when the attention config sets ``chunk_size``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.attention import build_attention

__all__ = ["NORM_KINDS", "SpatialSelfAttention", "sine_positional_encoding_2d"]

NORM_KINDS = ("layer", "group")


def sine_positional_encoding_2d(
    height: int,
    width: int,
    dim: int,
    *,
    temperature: float = 10000.0,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Fixed 2-D sine/cosine positional encoding (DETR style), flattened row-major.

    The first ``dim / 2`` channels encode the row (y), the last ``dim / 2`` the column
    (x); within each half, even channels are ``sin`` and odd channels ``cos`` of the
    coordinate at geometrically spaced frequencies. Coordinates are normalised to
    ``(0, 2*pi)`` (pixel centres), so a map of any size spans the same phase range and
    a model trained at one resolution still sees sensible encodings at another.

    Args:
        height: ``H``, rows of the feature map.
        width: ``W``, columns of the feature map.
        dim: ``C``, encoding size; must be divisible by 4 (sin+cos for each of y and x).
        temperature: base of the frequency progression.

    Returns:
        ``(H * W, C)`` tensor; row ``i * W + j`` is the encoding of position ``(i, j)``,
        matching ``x.flatten(2).transpose(1, 2)`` of a ``(B, C, H, W)`` map.
    """
    if dim % 4 != 0:
        raise ValueError(f"2-D sinusoidal encoding needs a channel count divisible by 4, got {dim}")
    if height < 1 or width < 1:
        raise ValueError(f"feature map must be at least 1x1, got {height}x{width}")
    dtype = dtype or torch.get_default_dtype()
    per_axis = dim // 2
    # Computed in float32 then cast: float16 would lose the high frequencies.
    y = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * (2 * math.pi)
    x = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * (2 * math.pi)
    exponent = 2 * torch.div(torch.arange(per_axis, device=device), 2, rounding_mode="floor") / per_axis
    freqs = temperature ** exponent.to(torch.float32)  # (C/2,)

    def encode(coord: Tensor) -> Tensor:  # (L,) -> (L, C/2), sin on even channels, cos on odd
        angles = coord[:, None] / freqs[None, :]
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = encode(y)[:, None, :].expand(height, width, per_axis)
    pos_x = encode(x)[None, :, :].expand(height, width, per_axis)
    return torch.cat((pos_y, pos_x), dim=2).reshape(height * width, dim).to(dtype)


class SpatialSelfAttention(nn.Module):
    """Residual self-attention block over the ``H * W`` positions of a feature map.

    ``y = Norm(x + Proj(Attn(q = x + P, k = x + P, v = x)))`` (post-norm, default) or
    ``y = x + Proj(Attn(q = n + P, k = n + P, v = n))`` with ``n = Norm(x)``
    (``norm_first=True``), where ``P`` is :func:`sine_positional_encoding_2d`.

    Args:
        channels: ``C`` of the feature map (queries, keys and values all have ``C``).
        attention: the attention config (``{"kind": ..., **options}``) passed to
            :func:`attnlab.attention.build_attention`. ``kind == "none"`` is rejected:
            the baseline adds no module at all (see :func:`attnlab.models.detector.build_detector`).
        norm: ``"layer"`` (LayerNorm over channels at each position) or ``"group"``
            (GroupNorm over the map, the norm torchvision's FCOS/RetinaNet heads use).
        num_groups: groups of the GroupNorm.
        norm_first: pre-norm instead of post-norm.
        dropout: dropout on the projected context before the residual sum.

    Shapes:
        input ``(B, C, H, W)`` -> output ``(B, C, H, W)``.

    Attention maps for visualisation: set ``keep_weights = True`` and the next forward
    stores the detached weights ``(B, H*W, H*W)`` in ``last_weights`` (and the map size in
    ``last_hw``); :meth:`attention_map` reads one query position's map from them. Off by
    default so training never materialises or keeps the weights.
    """

    def __init__(
        self,
        channels: int,
        attention: Mapping[str, Any],
        *,
        norm: str = "layer",
        num_groups: int = 32,
        norm_first: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        options = dict(attention)
        kind = options.pop("kind", None)
        if kind is None:
            raise ValueError("attention config needs a 'kind'")
        if kind == "none":
            raise ValueError("attention kind 'none' means no spatial attention module; do not build one")
        if norm not in NORM_KINDS:
            raise ValueError(f"norm must be one of {NORM_KINDS}, got {norm!r}")
        self.channels = int(channels)
        self.kind = str(kind)
        self.attn = build_attention(kind, query_dim=channels, key_dim=channels, value_dim=channels, **options)
        self.proj = nn.Linear(self.attn.out_dim, channels)
        self.dropout = nn.Dropout(dropout)
        self.norm_kind = norm
        self.norm: nn.Module = nn.LayerNorm(channels) if norm == "layer" else nn.GroupNorm(num_groups, channels)
        self.norm_first = bool(norm_first)
        self.keep_weights = False
        self.last_weights: Tensor | None = None
        self.last_hw: tuple[int, int] | None = None
        # The encoding is a pure function of (H, W, C); cache the last one (maps keep their size in a run).
        self._pos_cache: tuple[tuple[int, int, torch.device, torch.dtype], Tensor] | None = None

    def positional_encoding(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """``(H * W, C)`` encoding for an ``H x W`` map (cached for the last size seen)."""
        key = (height, width, device, dtype)
        if self._pos_cache is None or self._pos_cache[0] != key:
            pos = sine_positional_encoding_2d(height, width, self.channels, device=device, dtype=dtype)
            self._pos_cache = (key, pos)
        return self._pos_cache[1]

    def _apply_norm(self, seq: Tensor, height: int, width: int) -> Tensor:
        """Norm of a ``(B, H*W, C)`` sequence, returned in the same layout."""
        if self.norm_kind == "layer":
            return self.norm(seq)
        b, _, c = seq.shape
        grid = seq.transpose(1, 2).reshape(b, c, height, width)
        return self.norm(grid).flatten(2).transpose(1, 2)

    def forward(self, x: Tensor) -> Tensor:
        """``x (B, C, H, W)`` -> same shape, every position updated with context from all positions."""
        if x.dim() != 4 or x.size(1) != self.channels:
            raise ValueError(f"expected a (B, {self.channels}, H, W) feature map, got {tuple(x.shape)}")
        b, c, h, w = x.shape
        seq = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        inner = self._apply_norm(seq, h, w) if self.norm_first else seq
        pos = self.positional_encoding(h, w, x.device, x.dtype)  # (HW, C), broadcast over B
        qk = inner + pos
        context, weights = self.attn(qk, qk, inner, need_weights=self.keep_weights)  # (B, HW, out_dim)
        if self.keep_weights:
            self.last_weights = None if weights is None else weights.detach()
            self.last_hw = (h, w)
        out = seq + self.dropout(self.proj(context))
        if not self.norm_first:
            out = self._apply_norm(out, h, w)
        # reshape alone would be a channels-last *view*: convolutions after it would then produce
        # channels-last weight gradients (DDP warns about bucket strides and slows down).
        return out.transpose(1, 2).reshape(b, c, h, w).contiguous()

    def attention_map(self, query_yx: tuple[float, float], batch_index: int = 0) -> Tensor:
        """Attention of one query position over the map, from the last forward with ``keep_weights``.

        Args:
            query_yx: query position as fractions of the map's height and width, each in ``[0, 1]``
                (so callers can pick it in image coordinates without knowing the stride).
            batch_index: which image of the last batch.

        Returns:
            ``(H, W)`` weights of that query over all positions (sums to 1).
        """
        if self.last_weights is None or self.last_hw is None:
            raise RuntimeError("no stored attention weights: set keep_weights = True and run a forward first")
        h, w = self.last_hw
        row = min(h - 1, max(0, int(query_yx[0] * h)))
        col = min(w - 1, max(0, int(query_yx[1] * w)))
        return self.last_weights[batch_index, row * w + col].reshape(h, w)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kind={self.kind}, norm={self.norm_kind}, norm_first={self.norm_first}"
