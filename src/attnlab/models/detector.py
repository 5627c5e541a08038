"""torchvision detectors (FCOS, RetinaNet, Faster R-CNN) with self-attention over feature-map positions.

The detector, its anchors and its heads are torchvision's. :func:`build_detector` takes the
``model.net`` options, builds the backbone (:mod:`attnlab.models.backbones`), wraps it in the
attention neck (:mod:`attnlab.models.attention_neck`) unless the attention kind is ``none``, and
hands it to a thin per-detector builder.

With ``attention["kind"] == "none"`` nothing is added: the returned detector is exactly
the torchvision model that the same settings build (tests compare parameter lists).

Images go in as torchvision expects: a list of ``(3, H, W)`` float tensors in ``[0, 1]``;
targets as a list of ``{"boxes": (N, 4) xyxy pixels, "labels": (N,) int64 in 1..C}``.
``num_classes`` counts the background (``C + 1``): Faster R-CNN needs class 0 for
background, FCOS/RetinaNet simply never use logit 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import FCOS, FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops import MultiScaleRoIAlign

from attnlab.models.attention_neck import NeckSpec, SpatialAttentionFPNBackbone
from attnlab.models.backbones import DETECTOR_KINDS, ONE_STAGE, BackboneSpec, build_backbone, level_names
from attnlab.models.mixed_precision import float32_outputs
from attnlab.models.spatial_attention import SpatialSelfAttention

__all__ = ["AttentionDetector", "AttentionMap", "HeadSpec", "build_detector", "split_net_options"]


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
        # Any: torchvision's detectors differ in their parts (transform, head, rpn ...), read by kind below.
        self.detector: Any = detector
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
        return self.detector_kind in ONE_STAGE

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
                maps.append(
                    [
                        AttentionMap(level, module.attention_map(query, batch_index=i).cpu(), extent, (qy, qx))
                        for level, module in modules.items()
                    ]
                )
        finally:
            for module in modules.values():
                module.keep_weights = False
                module.last_weights = None
            self.train(was_training)
        return detections, maps


# --------------------------------------------------------------------------------------------- building
@dataclass(frozen=True)
class HeadSpec:
    """The transform, anchors, heads and post-processing (the ``model.net`` keys of the same names).

    Attributes:
        min_size, max_size: torchvision's ``GeneralizedRCNNTransform`` sizes. Set both to the data's
            image size so the model does not rescale what the datamodule already sized.
        anchor_sizes: per FPN level, the anchor sizes in pixels (FCOS: one per level; it also sets
            FCOS's scale ranges, 4x-8x the size). None = derived from the level strides
            (see :func:`_default_anchor_sizes`).
        aspect_ratios: anchor aspect ratios (RetinaNet/Faster R-CNN; default 0.5, 1, 2; FCOS uses 1).
        head_convs: conv layers per FCOS head branch (torchvision: 4); None keeps torchvision's head.
        score_thresh, nms_thresh: post-processing; None keeps the torchvision class's default.
        detections_per_img: detections kept per image.
        box_representation_size: Faster R-CNN box head width (torchvision: 1024).
        detector_kwargs: any other keyword of the torchvision class (e.g. ``rpn_post_nms_top_n_test``).
    """

    min_size: int = 800
    max_size: int = 1333
    anchor_sizes: Sequence[Sequence[float]] | None = None
    aspect_ratios: Sequence[float] | None = None
    head_convs: int | None = None
    score_thresh: float | None = None
    nms_thresh: float | None = None
    detections_per_img: int = 100
    box_representation_size: int = 1024
    detector_kwargs: Mapping[str, Any] | None = None


def split_net_options(options: Mapping[str, Any]) -> tuple[BackboneSpec, NeckSpec, HeadSpec]:
    """The flat ``model.net`` options (minus ``detector``) as the backbone, neck and head specs."""
    names = [{f.name for f in fields(spec)} for spec in (BackboneSpec, NeckSpec, HeadSpec)]
    unknown = sorted(set(options) - set().union(*names))
    if unknown:
        known = sorted(["detector", *set().union(*names)])
        raise TypeError(f"unknown detector options {unknown}; known: {known}")
    backbone = BackboneSpec(**{k: v for k, v in options.items() if k in names[0]})
    neck = NeckSpec(**{k: v for k, v in options.items() if k in names[1]})
    return backbone, neck, HeadSpec(**{k: v for k, v in options.items() if k in names[2]})


def build_detector(
    num_classes: int, attention: Mapping[str, Any] | None = None, *, detector: str = "fcos", **options: Any
) -> AttentionDetector:
    """Build a torchvision detector, with spatial self-attention unless ``attention["kind"] == "none"``.

    Args:
        num_classes: classes including background (``C + 1``).
        attention: attention config ``{"kind": ..., **options}`` (None or kind ``none`` = no attention).
        detector: ``fcos`` | ``retinanet`` | ``faster_rcnn``.
        options: the fields of :class:`~attnlab.models.backbones.BackboneSpec`,
            :class:`~attnlab.models.attention_neck.NeckSpec` and :class:`HeadSpec` (``conf/model/cnn_attn.yaml``).

    Returns:
        :class:`AttentionDetector` wrapping the torchvision model.
    """
    if detector not in DETECTOR_KINDS:
        raise ValueError(f"unknown detector {detector!r}; one of {DETECTOR_KINDS}")
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be >= 2, got {num_classes}")
    backbone_spec, neck, head = split_net_options(options)
    attention = dict(attention or {"kind": "none"})
    kind = str(attention.get("kind", "none"))
    base = build_backbone(backbone_spec, detector)
    # FPN output keys in the order the heads see them, and their strides.
    _, _, strides = level_names(base)
    anchors = _anchor_generator(detector, head, list(strides.values()))
    net: nn.Module = base
    if kind != "none":
        net = SpatialAttentionFPNBackbone(
            base,
            list(neck.attention_levels),
            attention,
            norm=neck.attention_norm,
            norm_first=neck.attention_norm_first,
            dropout=neck.attention_dropout,
        )
    model = _BUILDERS[detector](net, num_classes, anchors, head, base.out_channels, list(strides))
    return AttentionDetector(model, detector, kind)


def _default_anchor_sizes(detector: str, strides: Sequence[int]) -> list[list[float]]:
    """Anchor sizes per level from the level strides, with torchvision's ratios:
    FCOS one point of size = stride; RetinaNet 4*stride at three octave scales; Faster R-CNN 8*stride.
    (For the standard stride-8..128 / 4..64 levels these are exactly torchvision's default generators.)"""
    if detector == "fcos":
        return [[s] for s in strides]
    if detector == "retinanet":
        return [[4 * s, int(4 * s * 2 ** (1.0 / 3)), int(4 * s * 2 ** (2.0 / 3))] for s in strides]
    return [[8 * s] for s in strides]


def _anchor_generator(detector: str, head: HeadSpec, level_strides: list[int]) -> AnchorGenerator:
    """Anchors per FPN level: the configured sizes, or :func:`_default_anchor_sizes` of the strides."""
    if head.anchor_sizes is None:
        sizes = _default_anchor_sizes(detector, level_strides)
    else:
        sizes = [list(s) for s in head.anchor_sizes]
        if len(sizes) != len(level_strides):
            raise ValueError(
                f"anchor_sizes has {len(sizes)} levels but the backbone gives {len(level_strides)} "
                f"(strides {level_strides}); give one list per level"
            )
    if detector == "fcos":
        if any(len(s) != 1 for s in sizes):
            raise ValueError(f"FCOS takes exactly one anchor size per level, got {sizes}")
        ratios: tuple[float, ...] = (1.0,)
    else:
        ratios = tuple(float(r) for r in (head.aspect_ratios or (0.5, 1.0, 2.0)))
    return AnchorGenerator(tuple(tuple(s) for s in sizes), (ratios,) * len(sizes))


def _common_kwargs(head: HeadSpec, score_key: str, nms_key: str) -> dict[str, Any]:
    """The transform sizes, the thresholds that are set (under the class's own keyword names) and
    ``detector_kwargs``."""
    kwargs: dict[str, Any] = {"min_size": head.min_size, "max_size": head.max_size}
    kwargs.update(head.detector_kwargs or {})
    if head.score_thresh is not None:
        kwargs[score_key] = head.score_thresh
    if head.nms_thresh is not None:
        kwargs[nms_key] = head.nms_thresh
    return kwargs


def _fcos(
    net: nn.Module, num_classes: int, anchors: AnchorGenerator, head: HeadSpec, channels: int, levels: list[str]
) -> nn.Module:
    kwargs = _common_kwargs(head, "score_thresh", "nms_thresh")
    if head.head_convs is not None and head.head_convs != 4:
        kwargs["head"] = FCOSHead(channels, 1, num_classes, num_convs=head.head_convs)
    model = FCOS(net, num_classes, anchor_generator=anchors, detections_per_img=head.detections_per_img, **kwargs)
    float32_outputs(model.head)  # losses, box decoding and NMS read it: float32 even under bf16 autocast
    return model


def _retinanet(
    net: nn.Module, num_classes: int, anchors: AnchorGenerator, head: HeadSpec, channels: int, levels: list[str]
) -> nn.Module:
    kwargs = _common_kwargs(head, "score_thresh", "nms_thresh")
    model = RetinaNet(net, num_classes, anchor_generator=anchors, detections_per_img=head.detections_per_img, **kwargs)
    float32_outputs(model.head)  # as in _fcos
    return model


def _faster_rcnn(
    net: nn.Module, num_classes: int, anchors: AnchorGenerator, head: HeadSpec, channels: int, levels: list[str]
) -> nn.Module:
    kwargs = _common_kwargs(head, "box_score_thresh", "box_nms_thresh")
    # RoI pooling reads the FPN levels by key: all but the max-pool level, like torchvision's default.
    featmaps = [k for k in levels if k != "pool"]
    kwargs["box_roi_pool"] = MultiScaleRoIAlign(featmap_names=featmaps, output_size=7, sampling_ratio=2)
    classes: int | None = num_classes
    if head.box_representation_size != 1024:
        kwargs["box_head"] = TwoMLPHead(channels * 7**2, head.box_representation_size)
        kwargs["box_predictor"] = FastRCNNPredictor(head.box_representation_size, num_classes)
        classes = None  # torchvision refuses num_classes together with a box_predictor
    model = FasterRCNN(
        net, classes, rpn_anchor_generator=anchors, box_detections_per_img=head.detections_per_img, **kwargs
    )
    float32_outputs(model.rpn.head)  # as in _fcos, for both stages
    float32_outputs(model.roi_heads.box_predictor)
    return model


#: One thin builder per detector kind: (backbone, num_classes, anchors, head spec, FPN channels, FPN keys).
_BUILDERS: dict[str, Callable[[nn.Module, int, AnchorGenerator, HeadSpec, int, list[str]], nn.Module]] = {
    "fcos": _fcos,
    "retinanet": _retinanet,
    "faster_rcnn": _faster_rcnn,
}
