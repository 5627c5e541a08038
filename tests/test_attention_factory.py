"""The attention factory and config group: every kind built by name, options checked and named, the
conf/attention group composing into it, and no Lightning inside attnlab.attention."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from attnlab.attention import (
    ATTENTION_KINDS,
    SHARED_OPTIONS,
    AdditiveAttention,
    Attention,
    MultiHeadAttention,
    build_attention,
)

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"
PACKAGE_DIR = REPO / "src" / "attnlab" / "attention"


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_factory_builds_every_kind(kind: str) -> None:
    attn = build_attention(kind, query_dim=8, key_dim=8, value_dim=4, num_heads=2)
    assert isinstance(attn, Attention)
    assert attn.out_dim == 4
    ctx, weights = attn(torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 4))
    assert ctx.shape == (2, 3, 4) and weights is not None and weights.shape == (2, 3, 5)


def test_factory_unknown_kind_lists_valid_kinds() -> None:
    with pytest.raises(ValueError, match="bahdanau") as info:
        build_attention("bahdanau", 4, 4)
    for kind in ATTENTION_KINDS:
        assert kind in str(info.value)


def test_factory_unknown_option_is_named() -> None:
    with pytest.raises(ValueError, match="hiden_dim"):
        build_attention("additive", 4, 4, hiden_dim=16)
    with pytest.raises(ValueError, match="scale"):
        build_attention("dot", 4, 4, scale=True)


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("additive", {"num_heads": 8}),
        ("dot", {"hidden_dim": 32, "chunk_size": 4, "num_heads": 3}),
        ("general", {"num_heads": 2}),
        ("multihead", {"hidden_dim": 7, "chunk_size": 2}),
        ("none", {"hidden_dim": 1, "num_heads": 1, "chunk_size": None, "dropout": 0.1}),
    ],
)
def test_factory_ignores_shared_options_that_do_not_apply(kind: str, options: dict) -> None:
    attn = build_attention(kind, 4, 4, **options)
    assert isinstance(attn, Attention) and attn.out_dim == 4


def test_factory_applies_options() -> None:
    additive = build_attention("additive", 4, 6, hidden_dim=16, chunk_size=3, dropout=0.2)
    assert isinstance(additive, AdditiveAttention)
    assert (additive.hidden_dim, additive.chunk_size, additive.dropout) == (16, 3, 0.2)
    multihead = build_attention("multihead", 8, 6, num_heads=2)
    assert isinstance(multihead, MultiHeadAttention) and multihead.num_heads == 2


@pytest.mark.parametrize(
    "options",
    [
        {"hidden_dim": 0},
        {"num_heads": -1},
        {"chunk_size": 0},
        {"dropout": 1.0},
        {"dropout": -0.1},
        {"hidden_dim": True},
    ],
)
def test_factory_rejects_bad_option_values(options: dict) -> None:
    name = next(iter(options))
    with pytest.raises(ValueError, match=name):
        build_attention("additive", 4, 4, **options)


def test_dot_requires_equal_query_and_key_dims() -> None:
    with pytest.raises(ValueError, match="query_dim == key_dim"):
        build_attention("dot", 4, 5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((torch.randn(2, 3, 5), torch.randn(2, 4, 6)), "query"),
        ((torch.randn(2, 3, 4), torch.randn(3, 4, 6)), "batch"),
        ((torch.randn(2, 3, 4), torch.randn(2, 4, 6), torch.randn(2, 5, 6)), "same number"),
        ((torch.randn(2, 3, 4), torch.randn(2, 4, 6), None, torch.ones(2, 4)), "bool"),
        ((torch.randn(2, 3, 4), torch.randn(2, 4, 6), None, torch.ones(2, 5, dtype=torch.bool)), "mask"),
    ],
)
def test_bad_inputs_are_named(args: tuple, message: str) -> None:
    attn = build_attention("general", 4, 6)
    with pytest.raises(ValueError, match=message):
        attn(*args)


def test_config_group_composes_and_builds() -> None:
    """conf/attention/<kind>.yaml exists for every kind and feeds build_attention via hydra compose."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    assert {p.stem for p in (CONF_DIR / "attention").glob("*.yaml")} == set(ATTENTION_KINDS)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for kind in ATTENTION_KINDS:
            cfg = compose(config_name=None, overrides=[f"+attention={kind}"])
            options = OmegaConf.to_container(cfg.attention, resolve=True)
            assert isinstance(options, dict) and options["kind"] == kind
            assert set(options) - {"kind"} <= SHARED_OPTIONS
            attn = build_attention(**options, query_dim=16, key_dim=16, value_dim=16)
            ctx, _ = attn(torch.randn(1, 2, 16), torch.randn(1, 3, 16))
            assert ctx.shape == (1, 2, 16)
    additive = OmegaConf.load(CONF_DIR / "attention" / "additive.yaml")
    assert OmegaConf.to_container(additive) == {
        "kind": "additive",
        "hidden_dim": 128,
        "chunk_size": None,
        "dropout": 0.0,
    }
    multihead = OmegaConf.load(CONF_DIR / "attention" / "multihead.yaml")
    assert OmegaConf.to_container(multihead) == {"kind": "multihead", "num_heads": 4, "dropout": 0.0}


def test_package_does_not_import_lightning() -> None:
    """attnlab.attention sits below models/tasks: no Lightning imports anywhere in it."""
    for path in PACKAGE_DIR.glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert "lightning" not in name, f"{path.name} imports {name}"
