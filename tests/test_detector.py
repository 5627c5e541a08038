"""The detector: torchvision models with spatial self-attention, and the exact baseline for ``none``."""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torchvision.models.detection import FCOS
from torchvision.models.detection.backbone_utils import BackboneWithFPN

from attnlab.attention import ATTENTION_KINDS
from attnlab.models.attention_neck import SpatialAttentionFPNBackbone
from attnlab.models.backbones import BackboneSpec, build_backbone, resolve_backbone_weights
from attnlab.models.detector import AttentionDetector, build_detector, split_net_options
from attnlab.models.spatial_attention import SpatialSelfAttention, sine_positional_encoding_2d

# CPU-sized everything: 64x64 images, a narrow small CNN and FPN.
TINY = dict(min_size=64, max_size=64, fpn_channels=32, small_cnn_widths=(16, 32, 64, 64), small_cnn_depth=1)
NUM_CLASSES = 4  # 3 classes + background


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _batch(n: int = 2, size: int = 64) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=gen) for _ in range(n)]
    targets = [
        {"boxes": torch.tensor([[4.0, 6.0, 30.0, 40.0], [34.0, 30.0, 60.0, 58.0]]), "labels": torch.tensor([1, 3])}
        for _ in range(n)
    ]
    targets[-1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}  # an empty image
    return images, targets


def _param_shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in module.named_parameters()}


# ------------------------------------------------------------------------------ positional encoding
@pytest.mark.parametrize("h,w,dim", [(1, 1, 4), (8, 8, 64), (3, 5, 32), (16, 7, 128)])
def test_positional_encoding_shape_range_and_layout(h: int, w: int, dim: int) -> None:
    pos = sine_positional_encoding_2d(h, w, dim)
    assert pos.shape == (h * w, dim)
    assert torch.isfinite(pos).all() and pos.abs().max() <= 1.0
    grid = pos.reshape(h, w, dim)
    # First half encodes the row only, second half the column only (row-major flattening).
    assert torch.allclose(grid[:, :1, : dim // 2].expand(h, w, dim // 2), grid[..., : dim // 2])
    assert torch.allclose(grid[:1, :, dim // 2 :].expand(h, w, dim // 2), grid[..., dim // 2 :])
    if h * w > 1:  # every position gets its own code
        assert torch.cdist(pos, pos).add(torch.eye(h * w) * 10).min() > 1e-3


def test_positional_encoding_needs_multiple_of_four() -> None:
    with pytest.raises(ValueError, match="divisible by 4"):
        sine_positional_encoding_2d(4, 4, 30)


# ------------------------------------------------------------------------------ spatial attention
@pytest.mark.parametrize("kind", [k for k in ATTENTION_KINDS if k != "none"])
@pytest.mark.parametrize("norm,norm_first", [("layer", False), ("group", True)])
def test_spatial_attention_shapes_gradients_and_map(kind: str, norm: str, norm_first: bool) -> None:
    block = SpatialSelfAttention(32, {"kind": kind}, norm=norm, num_groups=8, norm_first=norm_first)
    x = torch.randn(2, 32, 5, 6, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape and torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert block.last_weights is None  # nothing kept unless asked
    block.keep_weights = True
    block(x.detach())
    assert block.last_weights.shape == (2, 30, 30)
    amap = block.attention_map((0.5, 0.5), batch_index=1)
    assert amap.shape == (5, 6)
    assert math.isclose(float(amap.sum()), 1.0, rel_tol=1e-5)


def test_spatial_attention_context_reaches_every_position() -> None:
    """Self-attention: changing one far-away position changes the output everywhere else."""
    torch.manual_seed(0)
    block = SpatialSelfAttention(16, {"kind": "additive", "hidden_dim": 16}).eval()
    x = torch.randn(1, 16, 6, 6)
    x2 = x.clone()
    x2[0, :, 5, 5] += 3.0
    changed = (block(x) - block(x2)).abs().sum(dim=1)[0]
    assert (changed[:5, :5] > 1e-6).all()


def test_spatial_attention_refuses_none() -> None:
    with pytest.raises(ValueError, match="none"):
        SpatialSelfAttention(16, {"kind": "none"})


# ------------------------------------------------------------------------------ detectors
@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_fcos_forward_loss_and_detections_for_every_attention_kind(kind: str) -> None:
    torch.manual_seed(0)
    model = build_detector(NUM_CLASSES, {"kind": kind}, attention_levels=["c4", "p4"], **TINY)
    images, targets = _batch()
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"classification", "bbox_regression", "bbox_ctrness"}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    attention = model.spatial_attention
    if kind == "none":
        assert attention == {}
    else:
        assert set(attention) == {"c4", "p4"}
        grads = [p.grad for m in attention.values() for p in m.parameters()]
        assert all(g is not None for g in grads) and any(g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == len(images)
    for det in detections:
        assert det["boxes"].shape[1] == 4 and len(det["boxes"]) == len(det["scores"]) == len(det["labels"])


@pytest.mark.parametrize(
    "detector,parts",
    [
        ("fcos", {"classification", "bbox_regression", "bbox_ctrness"}),
        ("retinanet", {"classification", "bbox_regression"}),
        ("faster_rcnn", {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}),
    ],
)
def test_each_detector_type_trains_and_detects(detector: str, parts: set[str]) -> None:
    torch.manual_seed(0)
    extra = {"box_representation_size": 64} if detector == "faster_rcnn" else {}
    model = build_detector(
        NUM_CLASSES, {"kind": "additive", "hidden_dim": 16}, detector=detector, attention_levels=["c4"], **TINY, **extra
    )
    images, targets = _batch()
    model.train()
    losses = model(images, targets)
    assert set(losses) == parts
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        detections = model(images)
    assert len(detections) == 2 and all(d["boxes"].shape[-1] == 4 for d in detections)
    assert model.has_loss_in_eval == (detector != "faster_rcnn")


@pytest.mark.parametrize(
    "detector,builder",
    [
        ("fcos", torchvision.models.detection.fcos_resnet50_fpn),
        ("retinanet", torchvision.models.detection.retinanet_resnet50_fpn),
        ("faster_rcnn", torchvision.models.detection.fasterrcnn_resnet50_fpn),
    ],
)
def test_none_is_exactly_the_torchvision_detector(detector: str, builder) -> None:
    """kind 'none' with torchvision's settings = torchvision's own builder, parameter for parameter."""
    ours = build_detector(91, {"kind": "none"}, detector=detector, backbone="resnet50")
    reference = builder(weights=None, weights_backbone=None, num_classes=91)
    assert type(ours.detector) is type(reference)
    assert type(ours.detector.backbone) is BackboneWithFPN
    assert _param_shapes(ours.detector) == _param_shapes(reference)
    assert {n: tuple(b.shape) for n, b in ours.detector.named_buffers()} == {
        n: tuple(b.shape) for n, b in reference.named_buffers()
    }
    assert not any(isinstance(m, SpatialSelfAttention) for m in ours.modules())
    head_anchors = ours.detector.anchor_generator if detector != "faster_rcnn" else ours.detector.rpn.anchor_generator
    ref_anchors = reference.anchor_generator if detector != "faster_rcnn" else reference.rpn.anchor_generator
    assert head_anchors.sizes == ref_anchors.sizes and head_anchors.aspect_ratios == ref_anchors.aspect_ratios


def test_none_small_cnn_equals_plain_construction_and_attention_only_adds() -> None:
    """The CPU default: 'none' is torchvision's FCOS on the same backbone; attention adds only its blocks."""
    torch.manual_seed(0)
    spec = BackboneSpec("small_cnn", fpn_channels=32, small_cnn_widths=(16, 32, 64, 64), small_cnn_depth=1)
    plain = FCOS(build_backbone(spec), NUM_CLASSES, min_size=64, max_size=64)
    none = build_detector(NUM_CLASSES, {"kind": "none"}, **TINY)
    assert isinstance(none, AttentionDetector) and type(none.detector) is FCOS
    assert _param_shapes(none.detector) == _param_shapes(plain)
    assert sum(p.numel() for p in none.parameters()) == sum(p.numel() for p in plain.parameters())

    attn = build_detector(NUM_CLASSES, {"kind": "additive", "hidden_dim": 16}, attention_levels=["c4"], **TINY)
    assert isinstance(attn.detector.backbone, SpatialAttentionFPNBackbone)
    extra = set(_param_shapes(attn)) - set(_param_shapes(none))
    assert extra and all(name.startswith("detector.backbone.attention.c4.") for name in extra)
    assert set(_param_shapes(none)) <= set(_param_shapes(attn))  # torchvision parameter names unchanged


def test_attention_levels_place_blocks_at_the_right_stride() -> None:
    sizes = dict(TINY, min_size=128, max_size=128, fpn_channels=64)
    model = build_detector(NUM_CLASSES, {"kind": "dot"}, attention_levels=["c4", "c5", "p3", "p6"], **sizes)
    backbone = model.detector.backbone
    assert backbone.level_strides == {"c4": 16, "c5": 32, "p3": 8, "p6": 64}
    seen: dict[str, tuple[int, ...]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, inp, out, lv=lv: seen.__setitem__(lv, tuple(out.shape)))
        for lv, m in model.spatial_attention.items()
    ]
    model.eval()
    with torch.no_grad():
        # p7 is 1x1 here: FCOS's head GroupNorm(32, C) needs C >= 64 to see 2+ values per group.
        model([torch.rand(3, 128, 128)])
    for hook in hooks:
        hook.remove()
    # stride 16 -> 8x8, 32 -> 4x4 (body channels); FPN levels have fpn_channels.
    assert seen == {"c4": (1, 64, 8, 8), "c5": (1, 64, 4, 4), "p3": (1, 64, 16, 16), "p6": (1, 64, 2, 2)}
    with pytest.raises(ValueError, match="unknown attention level 'p9'"):
        build_detector(NUM_CLASSES, {"kind": "dot"}, attention_levels=["p9"], **TINY)


def test_losses_and_detections_replays_the_torchvision_forward() -> None:
    """One pass for validation: its detections are exactly what the torchvision eval forward returns."""
    torch.manual_seed(0)
    for detector in ("fcos", "retinanet"):
        model = build_detector(
            NUM_CLASSES, {"kind": "multihead", "num_heads": 4}, detector=detector, score_thresh=0.0, **TINY
        ).eval()
        images, targets = _batch()
        with torch.no_grad():
            losses, detections = model.losses_and_detections(images, targets)
            reference = model(images)
        assert all(torch.isfinite(v) for v in losses.values())
        for ours, ref in zip(detections, reference):
            for key in ("boxes", "scores", "labels"):
                assert torch.equal(ours[key], ref[key])


def test_predict_with_attention_gives_one_map_per_level_and_image() -> None:
    model = build_detector(NUM_CLASSES, {"kind": "general"}, attention_levels=["c4", "p3"], **TINY)
    model.train()
    images = [torch.rand(3, 64, 64), torch.rand(3, 48, 64)]  # the second is padded to 64x64 by the transform
    detections, maps = model.predict_with_attention(images, [(10.0, 20.0), (40.0, 8.0)])
    assert model.training  # mode restored
    assert len(detections) == 2 and [len(m) for m in maps] == [2, 2]
    c4, p3 = maps[1]
    assert (c4.level, tuple(c4.weights.shape), p3.level, tuple(p3.weights.shape)) == ("c4", (4, 4), "p3", (8, 8))
    assert c4.extent == (64.0, 64.0) and c4.query_yx == (40.0, 8.0)
    assert math.isclose(float(p3.weights.sum()), 1.0, rel_tol=1e-5)
    assert all(m.last_weights is None and not m.keep_weights for m in model.spatial_attention.values())


def test_anchor_sizes_must_match_the_levels() -> None:
    with pytest.raises(ValueError, match="anchor_sizes has 2 levels"):
        build_detector(NUM_CLASSES, {"kind": "none"}, anchor_sizes=[[8], [16]], **TINY)
    model = build_detector(NUM_CLASSES, {"kind": "none"}, anchor_sizes=[[4], [8], [16], [32], [64]], **TINY)
    assert model.detector.anchor_generator.sizes == ((4,), (8,), (16,), (32,), (64,))


def test_pretrained_weights_are_resolved_not_downloaded() -> None:
    assert resolve_backbone_weights("resnet18", "DEFAULT") is torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    assert resolve_backbone_weights("resnet50", "ResNet50_Weights.IMAGENET1K_V2").name == "IMAGENET1K_V2"
    assert resolve_backbone_weights("small_cnn", None) is None
    with pytest.raises(ValueError, match="no pretrained weights"):
        resolve_backbone_weights("small_cnn", "DEFAULT")
    with pytest.raises(ValueError, match="unknown weights"):
        resolve_backbone_weights("resnet18", "NOPE")


def test_other_backbones_build_and_run() -> None:
    torch.manual_seed(0)
    for backbone in ("resnet18", "mobilenet_v3"):
        model = build_detector(
            NUM_CLASSES,
            {"kind": "additive", "hidden_dim": 16},
            backbone=backbone,
            attention_levels=["c5"],
            min_size=64,
            max_size=64,
            fpn_channels=32,
        )
        images, targets = _batch()
        losses = model.train()(images, targets)
        assert all(torch.isfinite(v) for v in losses.values()), backbone


def test_net_options_split_into_backbone_neck_and_head() -> None:
    """Every ``model.net`` key of the config lands in exactly one spec; an unknown key is an error."""
    from omegaconf import OmegaConf

    from .helpers import CONF

    net = OmegaConf.to_container(OmegaConf.load(CONF / "model" / "cnn_attn.yaml").net, resolve=False)
    net.pop("detector")
    backbone, neck, head = split_net_options(net)
    assert backbone.backbone == net["backbone"] and backbone.fpn_channels == net["fpn_channels"]
    assert list(neck.attention_levels) == net["attention_levels"] and head.score_thresh == net["score_thresh"]
    with pytest.raises(TypeError, match="unknown detector options \\['fpn_width'\\]"):
        build_detector(NUM_CLASSES, {"kind": "none"}, fpn_width=32)
