"""Detector backbones: a small CPU-sized CNN, ResNet-18/50 or MobileNetV3 under a torchvision FPN.

Built the way torchvision's detection builders build them (frozen BatchNorm and partly frozen
stages with pretrained weights), from a :class:`BackboneSpec`. :func:`level_names` names the places
where :mod:`attnlab.models.attention_neck` can put attention: ``c<k>`` inside the body after the
stage of stride ``2^k``, ``p<k>`` on an FPN output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

__all__ = [
    "BACKBONE_KINDS",
    "DETECTOR_KINDS",
    "ONE_STAGE",
    "BackboneSpec",
    "Float32LastLevelP6P7",
    "LastLevelP6",
    "SmallCNN",
    "build_backbone",
    "level_names",
    "resolve_backbone_weights",
]

DETECTOR_KINDS = ("fcos", "retinanet", "faster_rcnn")
BACKBONE_KINDS = ("small_cnn", "resnet18", "resnet50", "mobilenet_v3")
#: Detectors whose losses can be computed in eval mode (see ``AttentionDetector.losses_and_detections``).
ONE_STAGE = ("fcos", "retinanet")
# torchvision's architecture names (for weights look-up) of the backbones that have pretrained weights.
_TORCHVISION_ARCH = {"resnet18": "resnet18", "resnet50": "resnet50", "mobilenet_v3": "mobilenet_v3_large"}


# --------------------------------------------------------------------------------------------- backbones
class SmallCNN(nn.Module):
    """A plain conv-BN-ReLU network sized for CPU: a stride-2 stem and four stride-2 stages.

    Children are named like torchvision's ResNet (``layer1`` ... ``layer4``, at strides
    4, 8, 16, 32) so the same ``returned_layers`` convention and FPN builder apply.

    Args:
        widths: output channels of ``layer1`` ... ``layer4`` (the stem has ``widths[0] // 2``).
        depth: conv blocks per stage (the first one strides).

    Shapes:
        ``(B, 3, H, W)`` -> ``(B, widths[-1], H / 32, W / 32)`` (stage outputs are taken by the FPN).
    """

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), depth: int = 2) -> None:
        super().__init__()
        if len(widths) != 4:
            raise ValueError(f"small_cnn needs 4 stage widths, got {list(widths)}")
        if depth < 1:
            raise ValueError(f"small_cnn depth must be >= 1, got {depth}")
        self.widths = tuple(int(w) for w in widths)
        stem = max(8, self.widths[0] // 2)
        self.stem = _conv_bn_relu(3, stem, stride=2)
        in_ch = stem
        for i, width in enumerate(self.widths, start=1):
            blocks = [_conv_bn_relu(in_ch, width, stride=2)]
            blocks += [_conv_bn_relu(width, width, stride=1) for _ in range(depth - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*blocks))
            in_ch = width

    def forward(self, x: Tensor) -> Tensor:
        """``(B, 3, H, W)`` -> ``(B, widths[-1], H/32, W/32)``."""
        x = self.stem(x)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x


def _conv_bn_relu(in_ch: int, out_ch: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class _NoExtraLevels(ExtraFPNBlock):
    """FPN extra block that adds nothing (BackboneWithFPN would otherwise add a max-pool level)."""

    def forward(self, results: list[Tensor], x: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        return results, names


class LastLevelP6(ExtraFPNBlock):
    """One extra level ``p6`` = stride-2 conv of P5 (FCOS/RetinaNet's P6 without P7)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.p6 = nn.Conv2d(channels, channels, 3, 2, 1)
        nn.init.kaiming_uniform_(self.p6.weight, a=1)
        assert self.p6.bias is not None  # Conv2d has one unless bias=False
        nn.init.constant_(self.p6.bias, 0)

    def forward(self, p: list[Tensor], c: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        with torch.autocast(p[-1].device.type, enabled=False):  # see Float32LastLevelP6P7
            p.append(self.p6(p[-1].float()))
        names.append("p6")
        return p, names


class Float32LastLevelP6P7(LastLevelP6P7):
    """torchvision's P6 + P7 levels, computed in float32 under autocast.

    Why: on CPU, oneDNN's bf16 weight gradient of a stride-2 3x3 convolution over a 1x1 map (P7
    from a 1x1 P6, e.g. 64 px images) is garbage, and NaN in about half the calls (measured: torch
    2.14.1, AMX). These two small convolutions cost nothing in float32; parameter names are
    torchvision's.
    """

    def forward(self, p: list[Tensor], c: list[Tensor], names: list[str]) -> tuple[list[Tensor], list[str]]:
        with torch.autocast(p[-1].device.type, enabled=False):
            levels, names = super().forward(p[:-1] + [p[-1].float()], c[:-1] + [c[-1].float()], names)
        p[:] = levels
        return p, names


def resolve_backbone_weights(backbone: str, weights: str | None) -> Any:
    """torchvision weights enum for a backbone (``"DEFAULT"``, ``"IMAGENET1K_V1"`` or a full
    ``"ResNet50_Weights.IMAGENET1K_V1"``), or None. Resolving does not download anything."""
    if weights is None:
        return None
    if backbone not in _TORCHVISION_ARCH:
        raise ValueError(f"backbone {backbone!r} has no pretrained weights; use weights: null")
    if "." in weights:
        return torchvision.models.get_weight(weights)
    enum = torchvision.models.get_model_weights(_TORCHVISION_ARCH[backbone])
    try:
        return enum[weights]
    except KeyError:
        names = [w.name for w in enum] + ["DEFAULT"]
        raise ValueError(f"unknown weights {weights!r} for {backbone}; one of {names}") from None


def _extra_block(detector: str, extra_levels: int | None, channels: int) -> ExtraFPNBlock:
    """torchvision's extra FPN levels per detector: P6+P7 convs (one-stage), a max-pool level (Faster R-CNN)."""
    if extra_levels is None:
        extra_levels = 2 if detector in ONE_STAGE else 1
    if extra_levels == 0:
        return _NoExtraLevels()
    if detector in ONE_STAGE:
        if extra_levels == 2:
            return Float32LastLevelP6P7(channels, channels)  # from P5, as torchvision's fcos/retinanet (v1)
        if extra_levels == 1:
            return LastLevelP6(channels)
    elif extra_levels == 1:
        return LastLevelMaxPool()
    allowed = "0, 1, 2" if detector in ONE_STAGE else "0, 1"
    raise ValueError(f"extra_levels={extra_levels} is not available for {detector} ({allowed})")


@dataclass(frozen=True)
class BackboneSpec:
    """How to build the backbone and its FPN (the ``model.net`` keys of the same names).

    Attributes:
        backbone: one of :data:`BACKBONE_KINDS`.
        weights: pretrained backbone weights (see :func:`resolve_backbone_weights`), None = random init.
            Pretrained backbones use frozen BatchNorm and train only the last
            ``trainable_backbone_layers`` stages (default 3), as in torchvision.
        trainable_backbone_layers: see ``weights``.
        returned_layers: stages fed to the FPN: 1..4 for ``small_cnn``/ResNets, stage indices for
            MobileNetV3; None = the detector's default (one-stage: stages 2-4; Faster R-CNN: 1-4).
        fpn_channels: FPN width (torchvision uses 256). FCOS's head normalises with GroupNorm(32, C),
            which needs 2+ values per group: keep ``C >= 64`` when a level can be 1x1 with batch 1
            (e.g. P7 of a 128 px image).
        extra_levels: levels added above the last stage (0, 1 or 2; None = the detector's torchvision
            default: P6 + P7 for one-stage detectors, a max-pool level for Faster R-CNN).
        small_cnn_widths, small_cnn_depth: see :class:`SmallCNN`.
    """

    backbone: str = "small_cnn"
    weights: str | None = None
    trainable_backbone_layers: int | None = None
    returned_layers: Sequence[int] | None = None
    fpn_channels: int = 256
    extra_levels: int | None = None
    small_cnn_widths: Sequence[int] = (32, 64, 128, 256)
    small_cnn_depth: int = 2


def build_backbone(spec: BackboneSpec, detector: str = "fcos") -> BackboneWithFPN:
    """A torchvision :class:`BackboneWithFPN` built the way torchvision's detection builders build it.

    ``detector`` decides the defaults of ``returned_layers`` and of the extra levels. The backbone's
    ``forward((B, 3, H, W))`` gives an ordered dict of ``(B, fpn_channels, H/s, W/s)`` maps.
    """
    if spec.backbone not in BACKBONE_KINDS:
        raise ValueError(f"unknown backbone {spec.backbone!r}; one of {BACKBONE_KINDS}")
    if detector not in DETECTOR_KINDS:
        raise ValueError(f"unknown detector {detector!r}; one of {DETECTOR_KINDS}")
    weights_enum = resolve_backbone_weights(spec.backbone, spec.weights)
    extra = _extra_block(detector, spec.extra_levels, spec.fpn_channels)
    if spec.backbone == "mobilenet_v3":
        return _mobilenet_fpn(spec, weights_enum, extra)
    returned_layers = spec.returned_layers
    if returned_layers is None:
        returned_layers = [2, 3, 4] if detector in ONE_STAGE else [1, 2, 3, 4]
    returned_layers = [int(k) for k in returned_layers]
    if min(returned_layers) < 1 or max(returned_layers) > 4:
        raise ValueError(f"returned_layers must be in 1..4, got {returned_layers}")
    body, stage_channels = _staged_body(spec, weights_enum)
    return_layers = {f"layer{k}": str(v) for v, k in enumerate(returned_layers)}
    in_channels_list = [stage_channels[k] for k in returned_layers]
    return BackboneWithFPN(body, return_layers, in_channels_list, spec.fpn_channels, extra_blocks=extra)


def _norm_layer(weights_enum: Any) -> type[nn.Module]:
    # torchvision: frozen BN + partially frozen body with pretrained weights, everything trainable from scratch.
    return misc_nn_ops.FrozenBatchNorm2d if weights_enum is not None else nn.BatchNorm2d


def _mobilenet_fpn(spec: BackboneSpec, weights_enum: Any, extra: ExtraFPNBlock) -> BackboneWithFPN:
    """MobileNetV3-Large under an FPN, as torchvision's ``_mobilenet_extractor`` builds it."""
    from torchvision.models.detection.backbone_utils import _mobilenet_extractor

    body = torchvision.models.mobilenet_v3_large(weights=weights_enum, norm_layer=_norm_layer(weights_enum))
    num_stages = 1 + sum(1 for b in body.features if getattr(b, "_is_cn", False)) + 1
    trainable = num_stages
    if weights_enum is not None:
        trainable = 3 if spec.trainable_backbone_layers is None else spec.trainable_backbone_layers
    returned = list(spec.returned_layers) if spec.returned_layers else None
    fpn = _mobilenet_extractor(body, True, trainable, returned, extra)
    if spec.fpn_channels != fpn.out_channels:  # _mobilenet_extractor fixes 256; rebuild the FPN at the asked width
        in_channels = [m.in_channels for m in fpn.fpn.inner_blocks.modules() if isinstance(m, nn.Conv2d)]
        return_layers = dict(fpn.body.return_layers.items())
        fpn = BackboneWithFPN(fpn.body, return_layers, in_channels, spec.fpn_channels, extra_blocks=extra)
    return fpn


def _staged_body(spec: BackboneSpec, weights_enum: Any) -> tuple[nn.Module, dict[int, int]]:
    """The ``small_cnn`` or ResNet body (stages ``layer1`` ... ``layer4``) and each stage's channels;
    the stages a pretrained ResNet does not train are frozen."""
    if spec.backbone == "small_cnn":
        if weights_enum is not None:
            raise ValueError("small_cnn has no pretrained weights")
        small = SmallCNN(spec.small_cnn_widths, spec.small_cnn_depth)
        return small, {i + 1: w for i, w in enumerate(small.widths)}
    body = getattr(torchvision.models, spec.backbone)(weights=weights_enum, norm_layer=_norm_layer(weights_enum))
    base = body.inplanes // 8  # as torchvision's _resnet_fpn_extractor: 64 (basic) or 256 (bottleneck)
    trainable = 5
    if weights_enum is not None:
        trainable = 3 if spec.trainable_backbone_layers is None else spec.trainable_backbone_layers
    if not 0 <= trainable <= 5:
        raise ValueError(f"trainable_backbone_layers must be in 0..5, got {trainable}")
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable]
    if trainable == 5:
        layers_to_train.append("bn1")
    for name, parameter in body.named_parameters():
        if all(not name.startswith(layer) for layer in layers_to_train):
            parameter.requires_grad_(False)
    return body, {i: base * 2 ** (i - 1) for i in range(1, 5)}


# ----------------------------------------------------------------------------- level names
def level_names(backbone: BackboneWithFPN) -> tuple[dict[str, tuple[str, int]], dict[str, str], dict[str, int]]:
    """Names of the places where attention can go, by stride.

    Returns ``(body, fpn, strides)``:

    * ``body`` maps ``"c<k>"`` to ``(child name, channels)``: the LAST child of the body
      (``IntermediateLayerGetter``) whose output has stride ``2^k``, i.e. the end of that stage;
    * ``fpn`` maps ``"p<k>"`` *and* each raw FPN output key (``"0"``, ``"p6"``, ``"pool"`` ...)
      to that FPN output key;
    * ``strides`` maps each FPN output key, in output order, to its stride.

    Strides and channels come from one dry run of the body on a 256x256 input (the one
    way that works for any backbone), in eval mode and without gradients so BatchNorm
    statistics are untouched.
    """
    was_training = backbone.training
    backbone.eval()
    size = 256
    child_out: dict[str, tuple[int, int]] = {}  # child name -> (stride, channels)
    try:
        with torch.no_grad():
            param = next(backbone.parameters())
            x = torch.zeros(1, 3, size, size, device=param.device, dtype=param.dtype)
            for name, module in backbone.body.items():
                x = module(x)
                child_out[name] = (size // x.shape[-1], int(x.shape[1]))
    finally:
        backbone.train(was_training)
    body: dict[str, tuple[str, int]] = {}
    for name, (stride, channels) in child_out.items():  # later children overwrite: end of each stage
        body[f"c{int(math.log2(stride))}"] = (name, channels)
    strides = {key: child_out[name][0] for name, key in backbone.body.return_layers.items()}
    # FPN outputs: one per returned body output (same key and stride), then the extra levels,
    # each at twice the stride of the one before.
    extra = backbone.fpn.extra_blocks
    extra_names = {
        LastLevelP6P7: ["p6", "p7"],
        Float32LastLevelP6P7: ["p6", "p7"],
        LastLevelP6: ["p6"],
        LastLevelMaxPool: ["pool"],
    }.get(type(extra), [])
    last = max(strides.values())
    for name in extra_names:
        last *= 2
        strides[name] = last
    fpn = {f"p{int(math.log2(s))}": key for key, s in strides.items()}
    fpn.update({key: key for key in strides})
    return body, fpn, strides
