"""The seq2seq model and its decoders: shapes, masking, greedy vs beam search (no Lightning)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from attnlab.models.decoding import Hypotheses, beam_search, decode_budget, greedy_decode, length_penalty_factor
from attnlab.models.seq2seq import Seq2Seq

# The decoding settings are written once, in the model config; the tests override some of them.
_CFG = OmegaConf.load(Path(__file__).resolve().parents[1] / "conf" / "model" / "seq2seq_attn.yaml")
GREEDY: dict[str, Any] = {"max_len_a": _CFG.max_len_a, "max_len_b": _CFG.max_len_b, "max_len": _CFG.max_decode_len}
BEAM: dict[str, Any] = {
    **GREEDY,
    "beam_size": _CFG.beam_size,
    "length_penalty": _CFG.length_penalty,
    "length_penalty_kind": _CFG.length_penalty_kind,
}

PAD, BOS, EOS = 0, 2, 3
SRC_V, TGT_V = 30, 25
KINDS = ("additive", "dot", "general", "multihead", "none")


def make_model(kind: str = "additive", num_layers: int = 1, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(SRC_V, TGT_V, {"kind": kind}, emb_dim=16, hidden_dim=24, num_layers=num_layers, dropout=0.1).eval()


def make_batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """src (B, S) with random ids + <eos> and pad 0 after, lengths (B,), mask (B, S)."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    src = torch.full((len(lengths), width), PAD, dtype=torch.long)
    for i, n in enumerate(lengths):
        src[i, : n - 1] = torch.randint(4, SRC_V, (n - 1,), generator=g)
        src[i, n - 1] = EOS
    lens = torch.tensor(lengths)
    return src, lens, src != PAD


def run_greedy(
    model: Seq2Seq, src: torch.Tensor, lens: torch.Tensor, mask: torch.Tensor | None = None, **settings: Any
) -> Hypotheses:
    return greedy_decode(model, src, lens, mask, **{**GREEDY, **settings})


def run_beam(
    model: Seq2Seq, src: torch.Tensor, lens: torch.Tensor, mask: torch.Tensor | None = None, **settings: Any
) -> Hypotheses:
    return beam_search(model, src, lens, mask, **{**BEAM, **settings})


def make_tgt_in(batch: int, steps: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    tgt = torch.randint(4, TGT_V, (batch, steps), generator=g)
    tgt[:, 0] = BOS
    return tgt


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_layers", [1, 2])
def test_forward_shapes_and_attention_rows(kind: str, num_layers: int) -> None:
    model = make_model(kind, num_layers)
    src, lens, mask = make_batch([7, 4, 2])
    tgt_in = make_tgt_in(3, 5)
    logits, weights = model(src, lens, tgt_in, mask)
    assert logits.shape == (3, 5, TGT_V)
    assert weights is not None and weights.shape == (3, 5, 7)
    # Padded source positions get no attention; every row is a distribution over the real ones.
    assert torch.all(weights[~mask[:, None, :].expand_as(weights)] == 0)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))
    logits2, none = model(src, lens, tgt_in, mask, need_weights=False)
    assert none is None
    torch.testing.assert_close(logits2, logits)


@pytest.mark.parametrize("kind", ["additive", "dot", "multihead"])
def test_padding_does_not_change_other_sentences(kind: str) -> None:
    """A sentence's logits and decodings do not depend on the lengths of its batch-mates."""
    model = make_model(kind)
    src, lens, mask = make_batch([9, 3, 5], seed=3)
    tgt_in = make_tgt_in(3, 6)
    logits, weights = model(src, lens, tgt_in, mask)
    greedy = run_greedy(model, src, lens, mask)
    for i in range(3):
        n = int(lens[i])
        alone_logits, alone_weights = model(src[i : i + 1, :n], lens[i : i + 1], tgt_in[i : i + 1])
        torch.testing.assert_close(logits[i : i + 1], alone_logits, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(weights[i : i + 1, :, :n], alone_weights, atol=1e-6, rtol=1e-5)
        alone = run_greedy(model, src[i : i + 1, :n], lens[i : i + 1])
        k = int(alone.lengths[0])
        assert int(greedy.lengths[i]) == k
        assert torch.equal(greedy.tokens[i, :k], alone.tokens[0, :k])


def test_training_mode_differs_only_through_dropout() -> None:
    model = make_model("additive").train()
    src, lens, mask = make_batch([6, 4])
    tgt_in = make_tgt_in(2, 4)
    a, _ = model(src, lens, tgt_in, mask)
    b, _ = model(src, lens, tgt_in, mask)
    assert not torch.allclose(a, b)  # dropout is active
    a.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if p.requires_grad), "unused parameters"


@pytest.mark.parametrize("kind", ["additive", "general", "none"])
def test_beam_of_one_is_greedy(kind: str) -> None:
    model = make_model(kind, num_layers=2)
    src, lens, mask = make_batch([8, 5, 3, 6], seed=5)
    greedy = run_greedy(model, src, lens, mask, max_len_a=1.0, max_len_b=4)
    beam = run_beam(model, src, lens, mask, beam_size=1, length_penalty=0.0, max_len_a=1.0, max_len_b=4)
    assert torch.equal(greedy.lengths, beam.lengths)
    width = int(greedy.lengths.max())
    assert torch.equal(greedy.tokens[:, :width], beam.tokens[:, :width])
    torch.testing.assert_close(greedy.scores, beam.scores)
    torch.testing.assert_close(greedy.attention[:, :width], beam.attention[:, :width])


def test_beam_score_at_least_greedy_and_scores_are_honest() -> None:
    model = make_model("additive", seed=7)
    src, lens, mask = make_batch([9, 7, 5, 3, 8, 6, 4, 2], seed=11)
    greedy = run_greedy(model, src, lens, mask)
    beam = run_beam(model, src, lens, mask, beam_size=4, length_penalty=0.0)
    assert torch.all(beam.scores >= greedy.scores - 1e-4)
    assert torch.any(beam.scores > greedy.scores + 1e-3), "beam search never found anything better than greedy"
    # Reported scores are the model's log-probabilities of the returned token sequences.
    torch.testing.assert_close(model.sequence_log_prob(src, lens, beam.tokens), beam.scores, atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(model.sequence_log_prob(src, lens, greedy.tokens), greedy.scores, atol=1e-3, rtol=1e-4)


def test_beam_search_is_batch_independent_and_respects_lengths() -> None:
    """Vectorised over batch*beam: each sentence decodes as it would alone, within a*len+b tokens."""
    model = make_model("dot", seed=2)
    src, lens, mask = make_batch([6, 2, 4], seed=13)
    out = run_beam(model, src, lens, mask, beam_size=3, length_penalty=0.6, max_len_a=0.5, max_len_b=3)
    limits = (lens.float() * 0.5 + 3).long()
    assert torch.all(out.lengths <= limits) and torch.all(out.lengths >= 1)
    assert out.attention.shape == (3, out.tokens.size(1), 6)
    for i in range(3):
        n = int(lens[i])
        alone = run_beam(
            model, src[i : i + 1, :n], lens[i : i + 1], beam_size=3, length_penalty=0.6, max_len_a=0.5, max_len_b=3
        )
        k = int(out.lengths[i])
        assert int(alone.lengths[0]) == k
        assert torch.equal(out.tokens[i, :k], alone.tokens[0, :k])
        torch.testing.assert_close(out.scores[i], alone.scores[0], atol=1e-4, rtol=1e-5)
        # Tokens after a hypothesis' end are padding, and eos only ever ends one.
        assert torch.all(out.tokens[i, k:] == PAD)
        assert not torch.any(out.tokens[i, : k - 1] == EOS)


def test_decoders_never_emit_pad_or_bos() -> None:
    model = make_model("additive", seed=4)
    # Make pad and bos the most likely outputs: the decoders must still avoid them.
    with torch.no_grad():
        model.decoder.out.bias[PAD] = 50.0
        model.decoder.out.bias[BOS] = 40.0
    src, lens, mask = make_batch([5, 3], seed=1)
    for hyp in (run_greedy(model, src, lens, mask), run_beam(model, src, lens, mask, beam_size=3)):
        for i in range(2):
            real = hyp.tokens[i, : int(hyp.lengths[i])]
            assert not torch.any((real == PAD) | (real == BOS))


def test_length_penalty_factor() -> None:
    lengths = torch.tensor([1.0, 5.0, 10.0])
    torch.testing.assert_close(length_penalty_factor(lengths, 0.0, "gnmt"), torch.ones(3))
    torch.testing.assert_close(length_penalty_factor(lengths, 1.0, "gnmt"), (5 + lengths) / 6)
    torch.testing.assert_close(length_penalty_factor(lengths, 1.0, "average"), lengths)
    with pytest.raises(ValueError, match="length_penalty_kind"):
        length_penalty_factor(lengths, 1.0, "bogus")
    model = make_model()
    src, lens, _ = make_batch([3])
    with pytest.raises(ValueError, match="beam_size"):
        run_beam(model, src, lens, beam_size=0)


def test_models_package_does_not_import_lightning() -> None:
    code = (
        "import sys, attnlab.models.seq2seq, attnlab.models.decoding, attnlab.models.detector; "
        "bad = [m for m in ('pytorch_lightning', 'lightning') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_decoding_never_exceeds_the_absolute_cap(beam_size: int) -> None:
    """Row 8 (model side): a 10,000-token source would allow a*10000+b = 15,010 steps; the hard cap
    stops every sentence, greedy and beam, at max_len tokens."""
    torch.set_num_threads(1)
    model = make_model("dot")
    with torch.no_grad():
        model.decoder.out.bias[EOS] = -1e4  # never finishes by itself: only the cap can stop it
    src, lens, mask = make_batch([10_000, 5])
    assert decode_budget(lens, 1.5, 10, GREEDY["max_len"]).tolist() == [GREEDY["max_len"], 17]  # the configured cap
    hyp = (
        run_greedy(model, src, lens, mask, max_len_a=1.5, max_len_b=10, max_len=40)
        if beam_size == 1
        else run_beam(model, src, lens, mask, beam_size=beam_size, max_len_a=1.5, max_len_b=10, max_len=40)
    )
    assert hyp.tokens.size(1) == 40 and int(hyp.lengths.max()) == 40
    assert int(hyp.lengths[1]) == 17  # the short source keeps its own, smaller budget (1.5 * 5 + 10)
    with pytest.raises(ValueError, match="max_len"):
        decode_budget(lens, 1.5, 10, max_len=0)
