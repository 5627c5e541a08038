"""The attention neck: self-attention over feature-map positions, inserted into a detector's backbone/FPN.

:class:`SpatialAttentionFPNBackbone` wraps a torchvision :class:`BackboneWithFPN` (from
:mod:`attnlab.models.backbones`) and puts a :class:`~attnlab.models.spatial_attention.SpatialSelfAttention`
block on the levels a :class:`NeckSpec` names:

* backbone levels ``c3``, ``c4``, ``c5`` ...: inside the backbone, right after the stage whose
  output has stride 8, 16, 32 ...; the attended map feeds the later stages and the FPN
  (lateral and top-down), so every FPN level and every prediction sees the context;
* FPN levels ``p3``, ``p4`` ... ``p7`` (FPN outputs, named by stride 2^k), or the raw
  torchvision FPN output names (``"0"``, ``"1"``, ``"p6"``, ``"pool"`` ...): only the
  head's predictions on that level see the context.

Why ``c4`` is the CPU default: at stride 16 a 128 px image has 8x8 = 64 positions, so
``(H W)^2`` attention is cheap, and with FCOS's scale ranges small objects are predicted on
P3, which sees ``c4`` through the FPN's top-down path but would never see an attention
placed on the ``p4`` output.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN

from attnlab.models.backbones import level_names
from attnlab.models.spatial_attention import SpatialSelfAttention

__all__ = ["NeckSpec", "SpatialAttentionFPNBackbone"]


@dataclass(frozen=True)
class NeckSpec:
    """Where the attention goes and how it is wrapped (the ``model.net`` keys of the same names).

    Attributes:
        attention_levels: ``c<k>`` body levels and/or ``p<k>`` (or raw torchvision name) FPN levels,
            e.g. ``["c4"]`` or ``["p4", "p5"]``.
        attention_norm, attention_norm_first, attention_dropout: ``norm``, ``norm_first`` and
            ``dropout`` of :class:`SpatialSelfAttention`.
    """

    attention_levels: Sequence[str] = ("c4",)
    attention_norm: str = "layer"
    attention_norm_first: bool = False
    attention_dropout: float = 0.0


class SpatialAttentionFPNBackbone(nn.Module):
    """A torchvision :class:`BackboneWithFPN` with self-attention inserted on some feature maps.

    Keeps the wrapped backbone's ``body`` and ``fpn`` as its own children (so their parameter
    names are unchanged) and adds ``attention``: a ModuleDict from level name to
    :class:`SpatialSelfAttention`. Two kinds of places:

    * ``"c<k>"``: inside the backbone, right after the stage whose output has stride ``2^k``:
      the attended map feeds the later stages *and* the FPN (lateral + top-down), so every
      FPN level sees the context. ``forward`` runs the body's children itself (exactly what
      ``IntermediateLayerGetter.forward`` does) to put the block in the stream.
    * ``"p<k>"`` or a raw FPN output name: on that FPN output, so only the head's predictions
      on that level see the context.

    Output keys and shapes are the wrapped backbone's, so anchors, heads and RoI pooling work
    unchanged.

    Shapes:
        ``(B, 3, H, W)`` -> ordered dict of ``(B, out_channels, H/s, W/s)``.
    """

    def __init__(
        self,
        base: BackboneWithFPN,
        levels: Sequence[str],
        attention: Mapping[str, Any],
        *,
        norm: str = "layer",
        norm_first: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not levels:
            raise ValueError("attention_levels is empty; use attention kind 'none' for no attention")
        self.body = base.body
        self.fpn = base.fpn
        self.out_channels: int = base.out_channels
        body_names, fpn_names, strides = level_names(base)
        self._after_child: dict[str, str] = {}  # body child name -> level name
        self._fpn_keys: dict[str, str] = {}  # level name -> FPN output key
        self.level_strides: dict[str, int] = {}
        modules: dict[str, nn.Module] = {}
        for level in (str(lv) for lv in levels):
            if level in modules:
                raise ValueError(f"attention level {level!r} given twice")
            if level in body_names:
                child, channels = body_names[level]
                self._after_child[child] = level
                self.level_strides[level] = 2 ** int(level[1:])
            elif level in fpn_names:
                key = fpn_names[level]
                self._fpn_keys[level] = key
                channels = self.out_channels
                self.level_strides[level] = strides[key]
            else:
                known = sorted(body_names) + sorted(k for k in fpn_names if k.startswith("p"))
                raise ValueError(
                    f"unknown attention level {level!r}; this backbone has {known} "
                    f"(or the FPN output names {list(strides)})"
                )
            if channels % 4 != 0:
                raise ValueError(f"level {level} has {channels} channels; spatial attention needs a multiple of 4")
            modules[level] = SpatialSelfAttention(
                channels,
                attention,
                norm=norm,
                num_groups=math.gcd(32, channels),
                norm_first=norm_first,
                dropout=dropout,
            )
        self.attention = nn.ModuleDict(modules)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        """``(B, 3, H, W)`` -> ordered dict of FPN maps ``(B, out_channels, H/s, W/s)``."""
        feats: OrderedDict[str, Tensor] = OrderedDict()
        return_layers = self.body.return_layers
        for name, module in self.body.items():
            x = module(x)
            level = self._after_child.get(name)
            if level is not None:
                x = self.attention[level](x)
            if name in return_layers:
                feats[return_layers[name]] = x
        out = self.fpn(feats)
        for level, key in self._fpn_keys.items():
            out[key] = self.attention[level](out[key])
        return out
