"""torchvision detectors (FCOS, RetinaNet, Faster R-CNN) with self-attention over feature-map positions.

The detector, its anchors and its heads are torchvision's; this module only builds
the backbone (a small CPU-sized CNN, ResNet-18/50 or MobileNetV3 under a torchvision
FPN) and, unless the attention kind is ``none``, wraps that backbone so chosen
feature maps go through :class:`~attnlab.models.spatial_attention.SpatialSelfAttention`:

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

With ``attention["kind"] == "none"`` nothing is added: the returned detector is exactly
the torchvision model that the same settings build (tests compare parameter lists).

Images go in as torchvision expects: a list of ``(3, H, W)`` float tensors in ``[0, 1]``;
targets as a list of ``{"boxes": (N, 4) xyxy pixels, "labels": (N,) int64 in 1..C}``.
``num_classes`` counts the background (``C + 1``): Faster R-CNN needs class 0 for
background, FCOS/RetinaNet simply never use logit 0.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import misc as misc_nn_ops
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7

from attnlab.models.mixed_precision import float32_outputs
from attnlab.models.spatial_attention import SpatialSelfAttention

__all__ = [
    "BACKBONE_KINDS",
    "DETECTOR_KINDS",
    "AttentionDetector",
    "AttentionMap",
    "SmallCNN",
    "SpatialAttentionFPNBackbone",
    "build_backbone",
    "build_detector",
    "resolve_backbone_weights",
]

DETECTOR_KINDS = ("fcos", "retinanet", "faster_rcnn")
BACKBONE_KINDS = ("small_cnn", "resnet18", "resnet50", "mobilenet_v3")
_ONE_STAGE = ("fcos", "retinanet")
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
        extra_levels = 2 if detector in _ONE_STAGE else 1
    if extra_levels == 0:
        return _NoExtraLevels()
    if detector in _ONE_STAGE:
        if extra_levels == 2:
            return Float32LastLevelP6P7(channels, channels)  # from P5, as torchvision's fcos/retinanet (v1)
        if extra_levels == 1:
            return LastLevelP6(channels)
    elif extra_levels == 1:
        return LastLevelMaxPool()
    allowed = "0, 1, 2" if detector in _ONE_STAGE else "0, 1"
    raise ValueError(f"extra_levels={extra_levels} is not available for {detector} ({allowed})")


def build_backbone(
    backbone: str,
    *,
    detector: str = "fcos",
    weights: str | None = None,
    trainable_backbone_layers: int | None = None,
    returned_layers: Sequence[int] | None = None,
    fpn_channels: int = 256,
    extra_levels: int | None = None,
    small_cnn_widths: Sequence[int] = (32, 64, 128, 256),
    small_cnn_depth: int = 2,
) -> BackboneWithFPN:
    """A torchvision :class:`BackboneWithFPN` built the way torchvision's detection builders build it.

    Args:
        backbone: one of :data:`BACKBONE_KINDS`.
        detector: decides the defaults of ``returned_layers`` and the extra levels
            (one-stage: stages 2-4 + P6/P7; Faster R-CNN: stages 1-4 + a max-pool level).
        weights: pretrained backbone weights (see :func:`resolve_backbone_weights`), None = random init.
            Pretrained backbones use frozen BatchNorm and train only the last
            ``trainable_backbone_layers`` stages (default 3), as in torchvision.
        returned_layers: stages fed to the FPN: 1..4 for ``small_cnn``/ResNets, stage indices for MobileNetV3.
        fpn_channels: FPN width (torchvision uses 256). FCOS's head normalises with GroupNorm(32, C),
            which needs 2+ values per group: keep ``C >= 64`` when a level can be 1x1 with batch 1
            (e.g. P7 of a 128 px image).
        extra_levels: levels added above the last stage (0, 1 or 2; None = the detector's torchvision default).

    Returns:
        the backbone; ``forward((B, 3, H, W))`` gives an ordered dict of ``(B, fpn_channels, H/s, W/s)`` maps.
    """
    if backbone not in BACKBONE_KINDS:
        raise ValueError(f"unknown backbone {backbone!r}; one of {BACKBONE_KINDS}")
    if detector not in DETECTOR_KINDS:
        raise ValueError(f"unknown detector {detector!r}; one of {DETECTOR_KINDS}")
    weights_enum = resolve_backbone_weights(backbone, weights)
    pretrained = weights_enum is not None
    # torchvision: frozen BN + partially frozen body with pretrained weights, everything trainable from scratch.
    norm_layer = misc_nn_ops.FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    extra = _extra_block(detector, extra_levels, fpn_channels)

    if backbone == "mobilenet_v3":
        from torchvision.models.detection.backbone_utils import _mobilenet_extractor

        body = torchvision.models.mobilenet_v3_large(weights=weights_enum, norm_layer=norm_layer)
        num_stages = 1 + sum(1 for b in body.features if getattr(b, "_is_cn", False)) + 1
        trainable = num_stages if not pretrained else (
            3 if trainable_backbone_layers is None else trainable_backbone_layers)
        fpn = _mobilenet_extractor(body, True, trainable, list(returned_layers) if returned_layers else None, extra)
        if fpn_channels != fpn.out_channels:  # _mobilenet_extractor fixes 256; rebuild the FPN at the asked width
            in_channels = [m.in_channels for m in fpn.fpn.inner_blocks.modules() if isinstance(m, nn.Conv2d)]
            fpn = BackboneWithFPN(fpn.body, {k: v for k, v in fpn.body.return_layers.items()}, in_channels,
                                  fpn_channels, extra_blocks=extra)
        return fpn

    if returned_layers is None:
        returned_layers = [2, 3, 4] if detector in _ONE_STAGE else [1, 2, 3, 4]
    returned_layers = [int(k) for k in returned_layers]
    if min(returned_layers) < 1 or max(returned_layers) > 4:
        raise ValueError(f"returned_layers must be in 1..4, got {returned_layers}")
    if backbone == "small_cnn":
        if pretrained:
            raise ValueError("small_cnn has no pretrained weights")
        body = SmallCNN(small_cnn_widths, small_cnn_depth)
        stage_channels = {i + 1: w for i, w in enumerate(body.widths)}
        trainable = 5
    else:
        body = getattr(torchvision.models, backbone)(weights=weights_enum, norm_layer=norm_layer)
        base = body.inplanes // 8  # as torchvision's _resnet_fpn_extractor: 64 (basic) or 256 (bottleneck)
        stage_channels = {i: base * 2 ** (i - 1) for i in range(1, 5)}
        trainable = 5 if not pretrained else (3 if trainable_backbone_layers is None else trainable_backbone_layers)
        if not 0 <= trainable <= 5:
            raise ValueError(f"trainable_backbone_layers must be in 0..5, got {trainable}")
        layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable]
        if trainable == 5:
            layers_to_train.append("bn1")
        for name, parameter in body.named_parameters():
            if all(not name.startswith(layer) for layer in layers_to_train):
                parameter.requires_grad_(False)
    return_layers = {f"layer{k}": str(v) for v, k in enumerate(returned_layers)}
    in_channels_list = [stage_channels[k] for k in returned_layers]
    return BackboneWithFPN(body, return_layers, in_channels_list, fpn_channels, extra_blocks=extra)


# ----------------------------------------------------------------------------- attention on the backbone
def _level_names(backbone: BackboneWithFPN) -> tuple[dict[str, tuple[str, int]], dict[str, str], dict[str, int]]:
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
    extra_names = {LastLevelP6P7: ["p6", "p7"], Float32LastLevelP6P7: ["p6", "p7"], LastLevelP6: ["p6"],
                   LastLevelMaxPool: ["pool"]}.get(type(extra), [])
    last = max(strides.values())
    for name in extra_names:
        last *= 2
        strides[name] = last
    fpn = {f"p{int(math.log2(s))}": key for key, s in strides.items()}
    fpn.update({key: key for key in strides})
    return body, fpn, strides


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
        body_names, fpn_names, strides = _level_names(base)
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
                raise ValueError(f"unknown attention level {level!r}; this backbone has {known} "
                                 f"(or the FPN output names {list(strides)})")
            if channels % 4 != 0:
                raise ValueError(f"level {level} has {channels} channels; spatial attention needs a multiple of 4")
            modules[level] = SpatialSelfAttention(
                channels, attention, norm=norm, num_groups=math.gcd(32, channels),
                norm_first=norm_first, dropout=dropout,
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


# --------------------------------------------------------------------------------------------- detector
@dataclass
class AttentionMap:
    """One query position's attention over a feature map, for drawing over the image.

    Attributes:
        level: level name (``"c4"``, ``"p4"`` ...).
        weights: ``(h, w)`` weights over the map (sums to 1).
        extent: ``(height, width)`` in input-image pixels that the map covers (the padded batch
            tensor mapped back through the transform's scale), so ``imshow(extent=(0, W, H, 0))``
            lines it up with the image.
        query_yx: the query position in input-image pixels.
    """

    level: str
    weights: Tensor
    extent: tuple[float, float]
    query_yx: tuple[float, float]


class AttentionDetector(nn.Module):
    """A torchvision detector (``self.detector``) plus helpers for losses, detections and attention maps.

    ``forward`` is the torchvision forward: in training mode it returns the loss dict, in eval
    mode the detections (``[{"boxes": (N, 4) xyxy in input pixels, "scores": (N,), "labels": (N,)}]``).

    Attributes:
        detector: the torchvision model (FCOS / RetinaNet / FasterRCNN), unchanged for kind ``none``.
        detector_kind: ``"fcos"`` | ``"retinanet"`` | ``"faster_rcnn"``.
        attention_kind: the attention kind (``"none"`` = no attention module anywhere).
    """

    def __init__(self, detector: nn.Module, detector_kind: str, attention_kind: str) -> None:
        super().__init__()
        self.detector = detector
        self.detector_kind = detector_kind
        self.attention_kind = attention_kind

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """images: list of ``(3, H, W)`` in [0, 1]; targets: list of ``{"boxes": (N, 4), "labels": (N,)}``."""
        return self.detector(images, targets)

    @property
    def spatial_attention(self) -> dict[str, SpatialSelfAttention]:
        """The spatial attention modules by level (empty for kind ``none``)."""
        backbone = self.detector.backbone
        if isinstance(backbone, SpatialAttentionFPNBackbone):
            return dict(backbone.attention.items())  # type: ignore[arg-type]
        return {}

    @property
    def has_loss_in_eval(self) -> bool:
        """Whether :meth:`losses_and_detections` can give validation losses (one-stage detectors)."""
        return self.detector_kind in _ONE_STAGE

    def losses_and_detections(
        self, images: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[dict[str, Tensor], list[dict[str, Tensor]]]:
        """Losses and post-processed detections from ONE forward pass (FCOS / RetinaNet only).

        torchvision returns either losses (train mode) or detections (eval mode); validation
        wants both without a second pass, and without train-mode BatchNorm updating its
        statistics on validation data. This replays the one-stage forward (transform,
        backbone, head, anchors) once and calls the model's own ``compute_loss`` and
        ``postprocess_detections``. Call it in eval mode.

        Returns:
            ``(losses, detections)`` as torchvision's train and eval forwards would.
        """
        if not self.has_loss_in_eval:
            raise NotImplementedError(f"{self.detector_kind} computes losses only in training mode")
        model = self.detector
        original_sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        image_list, targets_t = model.transform(images, targets)
        features = list(model.backbone(image_list.tensors).values())
        head_outputs = model.head(features)
        anchors = model.anchor_generator(image_list, features)
        num_per_level = [f.size(2) * f.size(3) for f in features]
        if self.detector_kind == "fcos":
            losses = model.compute_loss(targets_t, head_outputs, anchors, num_per_level)
        else:
            losses = model.compute_loss(targets_t, head_outputs, anchors)
            anchors_per_pos = head_outputs["cls_logits"].size(1) // sum(num_per_level)
            num_per_level = [n * anchors_per_pos for n in num_per_level]
        split_outputs = {k: list(v.split(num_per_level, dim=1)) for k, v in head_outputs.items()}
        split_anchors = [list(a.split(num_per_level)) for a in anchors]
        detections = model.postprocess_detections(split_outputs, split_anchors, image_list.image_sizes)
        detections = model.transform.postprocess(detections, image_list.image_sizes, original_sizes)
        return losses, detections

    @torch.no_grad()
    def predict_with_attention(
        self, images: list[Tensor], queries_yx: Sequence[tuple[float, float]]
    ) -> tuple[list[dict[str, Tensor]], list[list[AttentionMap]]]:
        """Detections plus, for each image, the attention map of one query position per attention level.

        Args:
            images: list of ``(3, H, W)`` in [0, 1].
            queries_yx: one ``(y, x)`` query position per image, in that image's pixels.

        Returns:
            ``(detections, maps)``: torchvision eval detections and, per image, one
            :class:`AttentionMap` per attention level (empty lists for kind ``none``).
        """
        was_training = self.training
        self.eval()
        modules = self.spatial_attention
        for module in modules.values():
            module.keep_weights = True
        try:
            detections = self.detector(images)
            image_list, _ = self.detector.transform(images)
            padded_h, padded_w = image_list.tensors.shape[-2:]
            maps: list[list[AttentionMap]] = []
            for i, (img, (qy, qx)) in enumerate(zip(images, queries_yx)):
                scale_y = image_list.image_sizes[i][0] / img.shape[-2]
                scale_x = image_list.image_sizes[i][1] / img.shape[-1]
                query = (qy * scale_y / padded_h, qx * scale_x / padded_w)
                extent = (padded_h / scale_y, padded_w / scale_x)
                maps.append([
                    AttentionMap(level, module.attention_map(query, batch_index=i).cpu(), extent, (qy, qx))
                    for level, module in modules.items()
                ])
        finally:
            for module in modules.values():
                module.keep_weights = False
                module.last_weights = None
            self.train(was_training)
        return detections, maps


def _default_anchor_sizes(detector: str, strides: Sequence[int]) -> list[list[float]]:
    """Anchor sizes per level from the level strides, with torchvision's ratios:
    FCOS one point of size = stride; RetinaNet 4*stride at three octave scales; Faster R-CNN 8*stride.
    (For the standard stride-8..128 / 4..64 levels these are exactly torchvision's default generators.)"""
    if detector == "fcos":
        return [[s] for s in strides]
    if detector == "retinanet":
        return [[4 * s, int(4 * s * 2 ** (1.0 / 3)), int(4 * s * 2 ** (2.0 / 3))] for s in strides]
    return [[8 * s] for s in strides]


def build_detector(
    num_classes: int,
    attention: Mapping[str, Any] | None = None,
    *,
    detector: str = "fcos",
    backbone: str = "small_cnn",
    weights: str | None = None,
    trainable_backbone_layers: int | None = None,
    returned_layers: Sequence[int] | None = None,
    fpn_channels: int = 256,
    extra_levels: int | None = None,
    small_cnn_widths: Sequence[int] = (32, 64, 128, 256),
    small_cnn_depth: int = 2,
    min_size: int = 800,
    max_size: int = 1333,
    anchor_sizes: Sequence[Sequence[float]] | None = None,
    aspect_ratios: Sequence[float] | None = None,
    attention_levels: Sequence[str] = ("c4",),
    attention_norm: str = "layer",
    attention_norm_first: bool = False,
    attention_dropout: float = 0.0,
    head_convs: int | None = None,
    score_thresh: float | None = None,
    nms_thresh: float | None = None,
    detections_per_img: int = 100,
    box_representation_size: int = 1024,
    detector_kwargs: Mapping[str, Any] | None = None,
) -> AttentionDetector:
    """Build a torchvision detector, with spatial self-attention unless ``attention["kind"] == "none"``.

    Args:
        num_classes: classes including background (``C + 1``).
        attention: attention config ``{"kind": ..., **options}`` (None or kind ``none`` = no attention).
        detector: ``fcos`` | ``retinanet`` | ``faster_rcnn``.
        backbone, weights, trainable_backbone_layers, returned_layers, fpn_channels, extra_levels,
        small_cnn_widths, small_cnn_depth: see :func:`build_backbone`.
        min_size, max_size: torchvision's ``GeneralizedRCNNTransform`` sizes. Set both to the data's
            image size so the model does not rescale what the datamodule already sized.
        anchor_sizes: per FPN level, the anchor sizes in pixels (FCOS: one per level; it also sets
            FCOS's scale ranges, 4x-8x the size). None = derived from the level strides
            (see :func:`_default_anchor_sizes`).
        aspect_ratios: anchor aspect ratios (RetinaNet/Faster R-CNN; default 0.5, 1, 2; FCOS uses 1).
        attention_levels: where the attention goes: ``c<k>`` body levels and/or ``p<k>`` (or raw
            torchvision name) FPN levels, e.g. ``["c4"]`` or ``["p4", "p5"]``.
        attention_norm, attention_norm_first, attention_dropout: see :class:`SpatialSelfAttention`.
        head_convs: conv layers per FCOS head branch (torchvision: 4); None keeps torchvision's head.
        score_thresh, nms_thresh: post-processing; None keeps the torchvision class's default.
        detections_per_img: detections kept per image.
        box_representation_size: Faster R-CNN box head width (torchvision: 1024).
        detector_kwargs: any other keyword of the torchvision class (e.g. ``rpn_post_nms_top_n_test``).

    Returns:
        :class:`AttentionDetector` wrapping the torchvision model.
    """
    if detector not in DETECTOR_KINDS:
        raise ValueError(f"unknown detector {detector!r}; one of {DETECTOR_KINDS}")
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
    attention = dict(attention or {"kind": "none"})
    kind = str(attention.get("kind", "none"))
    base = build_backbone(
        backbone,
        detector=detector,
        weights=weights,
        trainable_backbone_layers=trainable_backbone_layers,
        returned_layers=returned_layers,
        fpn_channels=fpn_channels,
        extra_levels=extra_levels,
        small_cnn_widths=small_cnn_widths,
        small_cnn_depth=small_cnn_depth,
    )
    _, fpn_names, strides = _level_names(base)
    # FPN output keys in the order the heads see them, and their strides.
    level_keys = list(strides)
    level_strides = [strides[k] for k in level_keys]
    if anchor_sizes is None:
        sizes = _default_anchor_sizes(detector, level_strides)
    else:
        sizes = [list(s) for s in anchor_sizes]
        if len(sizes) != len(level_keys):
            raise ValueError(
                f"anchor_sizes has {len(sizes)} levels but the backbone gives {len(level_keys)} "
                f"(strides {level_strides}); give one list per level"
            )
    if detector == "fcos":
        if any(len(s) != 1 for s in sizes):
            raise ValueError(f"FCOS takes exactly one anchor size per level, got {sizes}")
        ratios: tuple[float, ...] = (1.0,)
    else:
        ratios = tuple(float(r) for r in (aspect_ratios or (0.5, 1.0, 2.0)))
    anchor_generator = AnchorGenerator(tuple(tuple(s) for s in sizes), (ratios,) * len(sizes))

    net: nn.Module = base
    if kind != "none":
        net = SpatialAttentionFPNBackbone(
            base, list(attention_levels), attention,
            norm=attention_norm, norm_first=attention_norm_first, dropout=attention_dropout,
        )

    kwargs: dict[str, Any] = dict(min_size=min_size, max_size=max_size)
    kwargs.update(detector_kwargs or {})
    if detector == "fcos":
        if head_convs is not None and head_convs != 4:
            kwargs["head"] = FCOSHead(base.out_channels, 1, num_classes, num_convs=head_convs)
        if score_thresh is not None:
            kwargs["score_thresh"] = score_thresh
        if nms_thresh is not None:
            kwargs["nms_thresh"] = nms_thresh
        model: nn.Module = FCOS(net, num_classes, anchor_generator=anchor_generator,
                                detections_per_img=detections_per_img, **kwargs)
    elif detector == "retinanet":
        if score_thresh is not None:
            kwargs["score_thresh"] = score_thresh
        if nms_thresh is not None:
            kwargs["nms_thresh"] = nms_thresh
        model = RetinaNet(net, num_classes, anchor_generator=anchor_generator,
                          detections_per_img=detections_per_img, **kwargs)
    else:
        if score_thresh is not None:
            kwargs["box_score_thresh"] = score_thresh
        if nms_thresh is not None:
            kwargs["box_nms_thresh"] = nms_thresh
        # RoI pooling reads the FPN levels by key: all but the max-pool level, like torchvision's default.
        featmaps = [k for k in level_keys if k != "pool"]
        kwargs["box_roi_pool"] = MultiScaleRoIAlign(featmap_names=featmaps, output_size=7, sampling_ratio=2)
        classes: int | None = num_classes
        if box_representation_size != 1024:
            kwargs["box_head"] = TwoMLPHead(base.out_channels * 7**2, box_representation_size)
            kwargs["box_predictor"] = FastRCNNPredictor(box_representation_size, num_classes)
            classes = None  # torchvision refuses num_classes together with a box_predictor
        model = FasterRCNN(net, classes, rpn_anchor_generator=anchor_generator,
                           box_detections_per_img=detections_per_img, **kwargs)
    # Losses, box decoding and NMS read the heads' outputs: float32 even under bf16 autocast.
    heads = [model.rpn.head, model.roi_heads.box_predictor] if detector == "faster_rcnn" else [model.head]
    for head in heads:
        float32_outputs(head)
    return AttentionDetector(model, detector, kind)
