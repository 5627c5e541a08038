"""Additive attention's tiling: any tiling of queries (and keys) computes the same thing, and checkpointed
tiles keep what autograd saves bounded. The peak-RSS check of a 4096 x 4096 forward+backward in a fresh
process is marked slow. (The properties every kind shares are in test_attention.py.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from attnlab.attention import AdditiveAttention

# Weighted sums of a handful of float32 numbers: differences stay ~1e-7.
ATOL = 1e-5


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    batch=st.integers(1, 2),
    num_queries=st.integers(1, 9),
    num_keys=st.integers(1, 9),
    chunk_size=st.one_of(st.none(), st.integers(1, 10)),
    tile_budget=st.sampled_from([1, 7, 40, 2**24]),
    masked=st.booleans(),
)
def test_additive_tiled_equals_untiled(
    batch: int, num_queries: int, num_keys: int, chunk_size: int | None, tile_budget: int, masked: bool
) -> None:
    """Any tiling (queries, or queries and keys) gives the same weights, context and gradients (1e-5)."""
    torch.manual_seed(batch * 100 + num_queries * 10 + num_keys)
    tiled = AdditiveAttention(3, 4, 2, hidden_dim=5, chunk_size=chunk_size, tile_budget=tile_budget)
    # chunk_size >= Tq is the plain computation: one (B, Tq, Tk, H) tensor, no checkpointing.
    plain = AdditiveAttention(3, 4, 2, hidden_dim=5, chunk_size=num_queries)
    plain.load_state_dict(tiled.state_dict())
    query, keys, values = (
        torch.randn(batch, num_queries, 3),
        torch.randn(batch, num_keys, 4),
        torch.randn(batch, num_keys, 2),
    )
    mask = (torch.rand(batch, num_keys) > 0.3) if masked else None

    results = []
    for module in (tiled, plain):
        inputs = [t.clone().requires_grad_() for t in (query, keys, values)]
        ctx, weights = module(*inputs, mask=mask)
        (ctx.sin().sum() + (weights * torch.linspace(0, 1, num_keys)).sum()).backward()
        grads = [t.grad for t in inputs] + [p.grad for p in module.parameters()]
        results.append((ctx.detach(), weights.detach(), grads))
    (ctx_t, w_t, g_t), (ctx_p, w_p, g_p) = results
    torch.testing.assert_close(ctx_t, ctx_p, atol=ATOL, rtol=0)
    torch.testing.assert_close(w_t, w_p, atol=ATOL, rtol=0)
    for grad_t, grad_p in zip(g_t, g_p):
        torch.testing.assert_close(grad_t, grad_p, atol=ATOL, rtol=0)
    # Inference (no graph) takes the non-checkpointed tiled path: same result.
    with torch.no_grad():
        torch.testing.assert_close(tiled(query, keys, values, mask)[0], ctx_p, atol=ATOL, rtol=0)


def test_additive_tile_sizes() -> None:
    attn = AdditiveAttention(4, 4, hidden_dim=128)
    assert attn.tile_sizes(1, 4096, 4096) == (32, 4096)  # 32 * 4096 * 128 = 2^24
    assert attn.tile_sizes(2, 10, 20) == (10, 20)  # small: one tile
    assert attn.tile_sizes(64, 4096, 4096) == (1, 2048)  # one query row is too big: tile keys too
    assert AdditiveAttention(4, 4, chunk_size=7).tile_sizes(3, 100, 50) == (7, 50)
    assert AdditiveAttention(4, 4, chunk_size=700).tile_sizes(3, 100, 50) == (100, 50)


def _saved_tensor_bytes(module: AdditiveAttention, query: torch.Tensor) -> int:
    """Bytes of distinct storages autograd keeps for backward after one forward."""
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        ctx, weights = module(query, query)
    (ctx.sum() + weights.sum()).backward()  # the graph really is usable
    assert query.grad is not None and torch.isfinite(query.grad).all()
    return sum(storages.values())


def test_additive_tiles_keep_autograd_memory_bounded() -> None:
    """Checkpointed tiles: backward does not hold the (B, Tq, Tk, H) tanh output.

    Plain chunking would still save every chunk's tanh output; this measures
    what autograd actually saves (distinct storages), which is what dominates
    peak memory in training.
    """
    torch.manual_seed(0)
    batch, length, hidden = 1, 384, 64
    full_energy = batch * length * length * hidden * 4  # bytes of one float32 (B, Tq, Tk, H)
    query = torch.randn(batch, length, 32)
    naive = AdditiveAttention(32, 32, hidden_dim=hidden, chunk_size=length)
    tiled = AdditiveAttention(32, 32, hidden_dim=hidden, tile_budget=2**18)
    tiled.load_state_dict(naive.state_dict())
    assert tiled.tile_sizes(batch, length, length)[0] < length
    naive_bytes = _saved_tensor_bytes(naive, query.clone().requires_grad_())
    tiled_bytes = _saved_tensor_bytes(tiled, query.clone().requires_grad_())
    assert naive_bytes >= full_energy  # the plain path really saves B*Tq*Tk*H
    # Tiled: only O(B*Tq*Tk) scores/weights and the O(B*T*H) projections.
    assert tiled_bytes < 4 * batch * length * length * 4 + 8 * batch * length * hidden * 4
    assert tiled_bytes < full_energy / 8


_PEAK_RSS_SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    torch.set_num_threads(2)
    from attnlab.attention import build_attention
    torch.manual_seed(0)
    attn = build_attention("additive", 128, 128, hidden_dim=128)  # chunk_size null = automatic
    x = torch.randn(1, 4096, 128, requires_grad=True)
    ctx, weights = attn(x, x)
    (ctx.square().mean() + weights.square().mean()).backward()
    assert torch.isfinite(x.grad).all() and attn.energy.weight.grad is not None
    # ru_maxrss is in KiB on Linux.
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    """
)


@pytest.mark.slow
def test_additive_4096_forward_backward_peak_rss_under_2gib() -> None:
    """Tq = Tk = 4096, H = 128, B = 1, D = 128: naive needs 8 GiB per (B,Tq,Tk,H) tensor; tiled < 2 GiB total.

    A fresh process so the peak belongs to this computation alone (it
    includes the ~0.5 GiB of importing torch).
    """
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_SCRIPT], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr
    peak_bytes = int(result.stdout.strip().splitlines()[-1])
    assert peak_bytes < 2 * 2**30, f"peak RSS {peak_bytes / 2**30:.2f} GiB"
