"""The GPU path: attention kinds and GRUs under CUDA autocast, trainer=gpu (bf16-mixed) for both
tasks, and the benchmark's --device cuda plumbing. Every test skips on a machine without CUDA
(``pytest -m gpu`` selects them; ``benchmarks/gpu_check.sh`` runs them on the GPU machine)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from attnlab.attention import ATTENTION_KINDS, build_attention
from attnlab.models.recurrent import bidirectional_gru

from .helpers import TINY_DETECTION, TINY_TRANSLATION, compose_train

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available())"),
]


def bf16() -> torch.autocast:
    """What Lightning's ``bf16-mixed`` runs the steps under on a GPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16)


@pytest.mark.parametrize("kind", ATTENTION_KINDS)
def test_attention_kinds_under_cuda_autocast_match_float32(kind: str) -> None:
    """Same module on CPU float32 and on CUDA under bf16 autocast: masking exact, weights normalised,
    context within bf16 tolerances (0.05 + 0.05 |x|, as in test_attention.py), finite gradients."""
    torch.manual_seed(0)
    module = build_attention(kind, 16, 16, 16, num_heads=4, hidden_dim=8).eval()
    query, keys = torch.randn(3, 5, 16), torch.randn(3, 7, 16)
    mask = torch.rand(3, 7) > 0.3
    mask[0], mask[1] = False, True  # one element with no key at all, one with every key
    ref_ctx, ref_w = module(query, keys, mask=mask)
    module = module.cuda()
    q, k, m = (t.cuda() for t in (query, keys, mask))
    q.requires_grad_()
    for need_weights in (True, False):  # False: multihead's SDPA kernel
        with bf16():
            ctx, weights = module(q, k, mask=m, need_weights=need_weights)
        torch.testing.assert_close(ctx.float().cpu(), ref_ctx, atol=5e-2, rtol=5e-2)
        assert (ctx[0] == 0).all(), "no attendable key: zero context"
        if need_weights:
            assert (weights[~m.unsqueeze(1).expand_as(weights)] == 0).all()
            torch.testing.assert_close(weights.float().cpu(), ref_w, atol=2e-2, rtol=0)
        ctx.float().square().sum().backward()
        assert torch.isfinite(q.grad).all()
        q.grad = None


def test_bidirectional_gru_on_cuda_equals_packed_cudnn() -> None:
    torch.manual_seed(0)
    rnn = nn.GRU(8, 6, num_layers=2, batch_first=True, bidirectional=True).cuda()
    x, lengths = torch.randn(4, 9, 8, device="cuda"), torch.tensor([9, 4, 1, 6])
    out, h_n = rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
    want, _ = pad_packed_sequence(out, batch_first=True, total_length=9)
    got, got_h = bidirectional_gru(rnn, x, lengths.cuda())
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got_h, h_n, atol=1e-5, rtol=1e-4)
    with bf16():
        low, _ = bidirectional_gru(rnn, x, lengths.cuda())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), want, atol=5e-2, rtol=5e-2)


@pytest.mark.parametrize("task", ["translation", "detection"])
def test_trainer_gpu_trains_validates_and_tests_in_bf16(task: str, tmp_path: Path) -> None:
    from attnlab.cli.training import train

    data = TINY_TRANSLATION if task == "translation" else TINY_DETECTION
    cfg = compose_train(
        [
            "trainer=gpu",
            "debug=limit",
            "trainer.max_epochs=1",
            "logger=csv",
            "extras.print_config=false",
            "callbacks.rich_progress_bar=null",
            *data,
        ],
        tmp_path,
    )
    metrics, objects = train(cfg)
    trainer = objects["trainer"]
    assert trainer.precision == "bf16-mixed" and next(objects["model"].parameters()).is_cuda
    assert math.isfinite(metrics["train/loss"])
    key = "test/bleu" if task == "translation" else "test/map_50"
    assert metrics[key] is not None and math.isfinite(metrics[key])


def test_bench_sections_run_on_cuda(tmp_path: Path) -> None:
    """--device cuda: training (trainer=gpu), attention cases (child processes using CUDA) and decoding."""
    from benchmarks.attention import run_isolated
    from benchmarks.overhead import compare_task
    from benchmarks.settings import BenchSettings

    settings = BenchSettings(mode="tiny", device="cuda", workdir=tmp_path, threads=1)
    out = compare_task(settings, "translation")
    assert out["details"]["precision"] == "bf16-mixed" and out["details"]["same_batches"]
    case = {
        "B": 2,
        "Tq": 8,
        "Tk": 8,
        "D": 16,
        "warmup": 1,
        "repeats": 2,
        "threads": 1,
        "device": "cuda",
        "name": "additive",
        "impl": "attnlab",
        "kind": "additive",
    }
    (result,) = run_isolated([case], timeout=300)
    assert result["ok"] and result["cuda_peak_bytes"] > 0, result
