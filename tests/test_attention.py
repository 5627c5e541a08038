"""Tests for the shared attention block (src/attnlab/attention): the properties every kind shares, each
kind's formula, and dropout.

Property tests (hypothesis) run for every kind; sizes are tiny so the part stays within a few seconds.
Additive attention's tiling is in test_attention_tiling.py, the factory and config group in
test_attention_factory.py.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from attnlab.attention import (
    ATTENTION_KINDS,
    AdditiveAttention,
    Attention,
    MultiHeadAttention,
    build_attention,
)

DROPOUT_KINDS = ("additive", "dot", "general", "multihead")
# Weighted sums of a handful of float32 numbers: differences stay ~1e-7.
ATOL = 1e-5

# The property tests run twice: in float32, and under CPU bf16 autocast (trainer.precision=bf16-mixed).
# bf16 keeps 8 mantissa bits (relative rounding 2^-9 ~ 0.002 per value); inputs here are N(0, 1)
# with at most 8 features, so the loose tolerances below are ~10x the rounding of one value:
#   "sum":    attention weights of a row sum to 1 within 0.02 (softmax is computed in float32, each
#             weight is then rounded to bf16);
#   "atol"/"rtol": two computations of the same context / weights agree within 0.05 + 0.05 * |x|
#             (different roundings of the projections, SDPA's bf16 kernel vs the explicit path).
PRECISIONS = ("fp32", "bf16")
TOLERANCES = {"fp32": {"sum": ATOL, "atol": ATOL, "rtol": 1e-4}, "bf16": {"sum": 2e-2, "atol": 5e-2, "rtol": 5e-2}}


def autocast(precision: str) -> contextlib.AbstractContextManager:
    """The autocast Lightning's ``bf16-mixed`` uses on CPU, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def close(actual: torch.Tensor, expected: torch.Tensor, precision: str) -> None:
    tol = TOLERANCES[precision]
    torch.testing.assert_close(actual.float(), expected.float(), atol=tol["atol"], rtol=tol["rtol"])


PROPERTY_SETTINGS = settings(
    max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


# --------------------------------------------------------------------------- helpers


@st.composite
def attention_case(draw: st.DrawFn, kind: str) -> dict:
    """Random small sizes, inputs and a mask (with some fully masked batch elements) for `kind`."""
    batch = draw(st.integers(1, 3))
    num_queries = draw(st.integers(1, 5))
    num_keys = draw(st.integers(1, 6))
    query_dim = draw(st.integers(1, 6))
    # dot needs Dq == Dk; every other kind must cope with different sizes.
    key_dim = query_dim if kind == "dot" else draw(st.integers(1, 6))
    options: dict = {"hidden_dim": draw(st.integers(1, 8)), "dropout": 0.0}
    if kind == "multihead":
        num_heads = draw(st.integers(1, 3))
        options["num_heads"] = num_heads
        # embedding size = value_dim if given, else query_dim: must be divisible by num_heads.
        value_dim = draw(st.one_of(st.none(), st.integers(1, 3).map(lambda m: m * num_heads)))
        if value_dim is None and query_dim % num_heads:
            options["num_heads"] = 1
    else:
        value_dim = draw(st.one_of(st.none(), st.integers(1, 6)))
    if kind == "additive":
        options["chunk_size"] = draw(st.one_of(st.none(), st.integers(1, 6)))
    mask_kind = draw(st.sampled_from(["none", "random", "all_true"]))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    query = torch.randn(batch, num_queries, query_dim, generator=gen)
    keys = torch.randn(batch, num_keys, key_dim, generator=gen)
    values = None if value_dim is None else torch.randn(batch, num_keys, value_dim, generator=gen)
    mask = None
    if mask_kind == "all_true":
        mask = torch.ones(batch, num_keys, dtype=torch.bool)
    elif mask_kind == "random":
        mask = torch.rand(batch, num_keys, generator=gen) > 0.5
        # Force the corner cases: one element with every key masked, one with every key kept.
        mask[draw(st.integers(0, batch - 1))] = False
        if batch > 1:
            mask[draw(st.integers(0, batch - 1))] = True
    torch.manual_seed(seed)  # parameter initialisation
    module = build_attention(kind, query_dim, key_dim, value_dim, **options)
    return {"module": module.eval(), "query": query, "keys": keys, "values": values, "mask": mask}


def _valid_mask(mask: torch.Tensor | None, batch: int, num_keys: int) -> torch.Tensor:
    return torch.ones(batch, num_keys, dtype=torch.bool) if mask is None else mask


def _copy_to_torch_mha(ours: MultiHeadAttention) -> nn.MultiheadAttention:
    """A torch.nn.MultiheadAttention with our parameters (needs Dq == embed dim)."""
    ref = nn.MultiheadAttention(ours.out_dim, ours.num_heads, kdim=ours.key_dim, vdim=ours.value_dim, batch_first=True)
    with torch.no_grad():
        if ref._qkv_same_embed_dim:
            ref.in_proj_weight.copy_(torch.cat([ours.q_proj.weight, ours.k_proj.weight, ours.v_proj.weight]))
        else:
            ref.q_proj_weight.copy_(ours.q_proj.weight)
            ref.k_proj_weight.copy_(ours.k_proj.weight)
            ref.v_proj_weight.copy_(ours.v_proj.weight)
        ref.in_proj_bias.copy_(torch.cat([ours.q_proj.bias, ours.k_proj.bias, ours.v_proj.bias]))
        ref.out_proj.weight.copy_(ours.out_proj.weight)
        ref.out_proj.bias.copy_(ours.out_proj.bias)
    return ref.eval()


# --------------------------------------------------------------------------- properties, every kind


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", ATTENTION_KINDS)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_interface_properties(kind: str, precision: str, data: st.DataObject) -> None:
    """Shapes, masking, normalisation, all-masked rows, finite gradients, need_weights=False."""
    case = data.draw(attention_case(kind))
    module: Attention = case["module"]
    query = case["query"].requires_grad_()
    keys = case["keys"].requires_grad_()
    values = case["values"].requires_grad_() if case["values"] is not None else None
    mask = case["mask"]
    batch, num_queries, num_keys = query.size(0), query.size(1), keys.size(1)

    with autocast(precision):
        context, weights = module(query, keys, values, mask)

    assert context.shape == (batch, num_queries, module.out_dim)
    assert weights is not None and weights.shape == (batch, num_queries, num_keys)
    assert torch.isfinite(context).all() and torch.isfinite(weights).all()
    assert (weights >= 0).all()

    valid = _valid_mask(mask, batch, num_keys)
    keep = valid.unsqueeze(1).expand_as(weights)
    assert (weights[~keep] == 0).all(), "a masked key must get exactly zero weight"
    has_key = valid.any(dim=-1)  # (B,)
    sums = weights.float().sum(dim=-1)  # (B, Tq)
    torch.testing.assert_close(sums[has_key], torch.ones_like(sums[has_key]), atol=TOLERANCES[precision]["sum"], rtol=0)
    # Every key masked: zero weights and zero context, not NaN.
    assert (weights[~has_key] == 0).all()
    assert (context[~has_key] == 0).all()

    # Gradients flow and are finite even through fully masked rows.
    (context.float().square().sum() + weights.float().square().sum()).backward()
    grads = [t.grad for t in (query, keys, values) if t is not None]
    grads += [p.grad for p in module.parameters()]
    for grad in grads:
        if grad is not None:
            assert torch.isfinite(grad).all()
    assert (values if values is not None else keys).grad is not None  # the context depends on the values

    # need_weights=False: same context (multihead: a different kernel), no weights.
    with torch.no_grad(), autocast(precision):
        fast_context, no_weights = module(query, keys, values, mask, need_weights=False)
    assert no_weights is None
    close(fast_context, context.detach(), precision)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", [k for k in ATTENTION_KINDS if k != "multihead"])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_context_is_weights_times_values(kind: str, precision: str, data: st.DataObject) -> None:
    """For the single-head kinds the context is exactly the weighted sum of the values."""
    case = data.draw(attention_case(kind))
    values = case["values"] if case["values"] is not None else case["keys"]
    with torch.no_grad(), autocast(precision):
        context, weights = case["module"](case["query"], case["keys"], case["values"], case["mask"])
    close(context, weights.float() @ values, precision)
    assert case["module"].out_dim == values.size(-1)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", ATTENTION_KINDS)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_no_mask_equals_all_true_mask(kind: str, precision: str, data: st.DataObject) -> None:
    case = data.draw(attention_case(kind))
    module, query, keys, values = case["module"], case["query"], case["keys"], case["values"]
    all_true = torch.ones(keys.size(0), keys.size(1), dtype=torch.bool)
    with torch.no_grad(), autocast(precision):
        ctx_none, w_none = module(query, keys, values, None)
        ctx_true, w_true = module(query, keys, values, all_true)
    # Same inputs, same kernels: equal up to float32 rounding in either precision.
    torch.testing.assert_close(ctx_none, ctx_true)
    torch.testing.assert_close(w_none, w_true)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_masked_keys_do_not_influence_output(kind: str, precision: str) -> None:
    """Changing a masked key/value must not change anything (it is really ignored, not just down-weighted)."""
    torch.manual_seed(0)
    module = build_attention(kind, 8, 8, 8, num_heads=2).eval()
    query, keys, values = torch.randn(2, 3, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, False, True, False], [False, True, True, True, True]])
    with torch.no_grad(), autocast(precision):
        ctx, weights = module(query, keys, values, mask)
        keys2, values2 = keys.clone(), values.clone()
        keys2[~mask] = 1e3
        values2[~mask] = -1e3
        ctx2, weights2 = module(query, keys2, values2, mask)
    # Exactly ignored, in bf16 too (masked weights are exact zeros).
    torch.testing.assert_close(ctx, ctx2)
    torch.testing.assert_close(weights, weights2)


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_prepared_keys_give_the_same_output_and_gradients(kind: str, precision: str) -> None:
    """prepare() once + one call per query step == the plain call, values and gradients alike."""
    torch.manual_seed(0)
    module = build_attention(kind, 8, 8, 6, num_heads=2, hidden_dim=5).eval()
    query = torch.randn(3, 4, 8)
    keys, values = torch.randn(3, 5, 8, requires_grad=True), torch.randn(3, 5, 6, requires_grad=True)
    mask = torch.tensor([[True, True, False, True, False], [False] * 5, [True] * 5])
    with autocast(precision):
        ctx, weights = module(query, keys, values, mask)
    plain_grads = torch.autograd.grad(ctx.float().square().sum(), (keys, values), allow_unused=True)

    with autocast(precision):
        prepared = module.prepare(keys, values, mask)
        steps = [module(q, prepared) for q in query.split(1, dim=1)]  # one decoder step per query
    ctx2 = torch.cat([c for c, _ in steps], dim=1)
    close(ctx2, ctx, precision)
    close(torch.cat([w for _, w in steps], dim=1), weights, precision)
    grads = torch.autograd.grad(ctx2.float().square().sum(), (keys, values), allow_unused=True)
    for got, want in zip(grads, plain_grads):
        assert (got is None) == (want is None)
        if want is not None:
            close(got, want, precision)
    # Rows can be repeated (beam search) and still match.
    rows = torch.tensor([2, 2, 0])
    with torch.no_grad(), autocast(precision):
        ctx3, _ = module(query[rows], prepared.index_select(rows))
    close(ctx3, ctx.detach()[rows], precision)


def test_prepared_keys_misuse_is_named() -> None:
    module, other = build_attention("additive", 4, 4), build_attention("additive", 4, 4)
    keys = torch.randn(2, 3, 4)
    prepared = module.prepare(keys)
    with pytest.raises(ValueError, match="values=None and mask=None"):
        module(torch.randn(2, 1, 4), prepared, keys)
    with pytest.raises(ValueError, match="another attention block"):
        other(torch.randn(2, 1, 4), prepared)
    with pytest.raises(ValueError, match="batch sizes differ"):
        module(torch.randn(3, 1, 4), prepared)


# --------------------------------------------------------------------------- the formulas


def test_additive_matches_bahdanau_formula() -> None:
    torch.manual_seed(0)
    attn = AdditiveAttention(5, 7, 3, hidden_dim=4).eval()
    query, keys, values = torch.randn(2, 3, 5), torch.randn(2, 4, 7), torch.randn(2, 4, 3)
    mask = torch.tensor([[True, False, True, True], [True, True, True, True]])
    with torch.no_grad():
        ctx, weights = attn(query, keys, values, mask)
        wq, bq, wk = attn.query_proj.weight, attn.query_proj.bias, attn.key_proj.weight
        v = attn.energy.weight.view(-1)
        # score[b,i,j] = v . tanh(W_q q_i + b + W_k k_j), computed the naive way.
        energy = torch.tanh((query @ wq.T + bq)[:, :, None, :] + (keys @ wk.T)[:, None, :, :])
        scores = (energy * v).sum(-1).masked_fill(~mask[:, None, :], -math.inf)
        expected = scores.softmax(-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(ctx, expected @ values)


def test_luong_scores_are_unscaled() -> None:
    torch.manual_seed(0)
    query, keys = torch.randn(2, 3, 6), torch.randn(2, 4, 6)
    dot = build_attention("dot", 6, 6).eval()
    with torch.no_grad():
        _, weights = dot(query, keys)
    torch.testing.assert_close(weights, (query @ keys.transpose(1, 2)).softmax(-1))

    general = build_attention("general", 6, 5).eval()
    keys5 = torch.randn(2, 4, 5)
    with torch.no_grad():
        _, weights = general(query, keys5)
        projected = query @ general.query_proj.weight.T  # W: Dq -> Dk
    torch.testing.assert_close(weights, (projected @ keys5.transpose(1, 2)).softmax(-1))


def test_none_is_masked_mean_over_keys() -> None:
    attn = build_attention("none", 3, 4)
    assert list(attn.parameters()) == []
    keys = torch.arange(24, dtype=torch.float32).view(2, 3, 4)
    mask = torch.tensor([[True, False, True], [False, False, False]])
    ctx, weights = attn(torch.randn(2, 5, 3), keys, mask=mask)
    expected_weights = torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.0, 0.0]]).unsqueeze(1).expand(2, 5, 3)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(ctx[0], ((keys[0, 0] + keys[0, 2]) / 2).expand(5, 4))
    assert (ctx[1] == 0).all()
    # The query does not matter.
    ctx_other, _ = attn(torch.randn(2, 5, 3) * 100, keys, mask=mask)
    torch.testing.assert_close(ctx, ctx_other)


def test_multihead_single_head_context_is_weights_times_values() -> None:
    """With one head and identity value/output projections, context == weights @ values exactly."""
    torch.manual_seed(0)
    attn = MultiHeadAttention(5, 6, 4, num_heads=1).eval()
    with torch.no_grad():
        attn.v_proj.weight.copy_(torch.eye(4))
        attn.v_proj.bias.zero_()
        attn.out_proj.weight.copy_(torch.eye(4))
        attn.out_proj.bias.zero_()
    query, keys, values = torch.randn(3, 2, 5), torch.randn(3, 7, 6), torch.randn(3, 7, 4)
    mask = torch.rand(3, 7) > 0.3
    mask[0] = True
    with torch.no_grad():
        ctx, weights = attn(query, keys, values, mask)
        fast, _ = attn(query, keys, values, mask, need_weights=False)
    torch.testing.assert_close(ctx, weights @ values)
    torch.testing.assert_close(fast, weights @ values)


@pytest.mark.parametrize("key_dim", [8, 6])
def test_multihead_matches_torch_multihead_attention(key_dim: int) -> None:
    """Per-head math, head averaging and output projection agree with torch's reference module.

    key_dim 8 exercises torch's packed in-projection, 6 its separate projections.
    """
    torch.manual_seed(0)
    ours = MultiHeadAttention(8, key_dim, 8, num_heads=4).eval()  # torch needs Dq == embed dim (= value_dim)
    ref = _copy_to_torch_mha(ours)
    query, keys, values = torch.randn(3, 4, 8), torch.randn(3, 5, key_dim), torch.randn(3, 5, 8)
    # No fully masked element here: torch returns NaN for those (ours returns zeros, tested elsewhere).
    mask = torch.tensor([[True] * 5, [True, False, True, False, True], [False, True, True, True, True]])
    with torch.no_grad():
        ctx, weights = ours(query, keys, values, mask)
        fast, _ = ours(query, keys, values, mask, need_weights=False)
        ref_ctx, ref_weights = ref(query, keys, values, key_padding_mask=~mask, need_weights=True)
    torch.testing.assert_close(ctx, ref_ctx, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(fast, ref_ctx, atol=ATOL, rtol=1e-4)
    torch.testing.assert_close(weights, ref_weights, atol=ATOL, rtol=1e-4)


def test_multihead_out_dim_and_head_check() -> None:
    assert build_attention("multihead", 12, 6).out_dim == 12  # no value_dim: query_dim
    assert build_attention("multihead", 12, 6, 8, num_heads=2).out_dim == 8  # value_dim
    with pytest.raises(ValueError, match="num_heads=5"):
        build_attention("multihead", 12, 12, num_heads=5)


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("kind", DROPOUT_KINDS)
def test_dropout_only_in_training_mode(kind: str) -> None:
    torch.manual_seed(0)
    attn = build_attention(kind, 8, 8, num_heads=2, dropout=0.5)
    plain = build_attention(kind, 8, 8, num_heads=2, dropout=0.0)
    plain.load_state_dict(attn.state_dict())
    query, keys = torch.randn(2, 6, 8), torch.randn(2, 10, 8)
    with torch.no_grad():
        attn.eval()
        plain.eval()
        torch.testing.assert_close(attn(query, keys)[0], plain(query, keys)[0])
        attn.train()
        ctx_a, weights = attn(query, keys)
        ctx_b, _ = attn(query, keys)
        fast, _ = attn(query, keys, need_weights=False)
    assert not torch.allclose(ctx_a, ctx_b), "training-mode dropout should be random"
    assert not torch.allclose(ctx_a, plain(query, keys)[0].detach())
    assert not torch.allclose(fast, plain(query, keys)[0].detach()), "SDPA path must apply dropout too"
    # The returned weights are the un-dropped distribution (what plots want).
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 6))


def test_none_ignores_dropout() -> None:
    attn = build_attention("none", 4, 4, dropout=0.5).train()
    keys = torch.randn(2, 5, 4)
    torch.testing.assert_close(attn(torch.randn(2, 3, 4), keys)[0], keys.mean(1, keepdim=True).expand(2, 3, 4))
