"""Batched beam search for :class:`attnlab.models.seq2seq.Seq2Seq`.

Every sentence of the batch and every beam are decoded together as one (B*K) batch;
there is no Python loop over sentences, only over output positions.

Algorithm (close to fairseq's):
    * each step scores all K*V continuations of the K alive hypotheses and keeps the 2K best;
    * an ``eos`` continuation ranked within the top K *finishes* a hypothesis: it is compared,
      length-penalised, with the sentence's best finished one so far;
    * the K best non-``eos`` continuations stay alive (so the beam never shrinks);
    * a sentence reaching its length budget ``a*src_len+b`` finishes its alive hypotheses as they are;
    * a sentence stops early once no alive hypothesis can beat its best finished one: log-probs only
      decrease, so for a length penalty that grows with length the best reachable normalised
      score is ``alive_score / lp(budget)``.

Restricting finishing to the top K makes ``beam_size=1`` (with no length penalty) identical to
greedy decoding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from attnlab.models.seq2seq import Hypotheses, Seq2Seq

__all__ = ["LENGTH_PENALTY_KINDS", "beam_search", "length_penalty_factor"]

LENGTH_PENALTY_KINDS = ("gnmt", "average", "none")


def length_penalty_factor(lengths: Tensor, alpha: float, kind: str = "gnmt") -> Tensor:
    """Divisor of a hypothesis' log-probability, per length.

    Args:
        lengths: (...) hypothesis lengths (eos included), any numeric dtype.
        alpha: strength; 0 disables the penalty.
        kind: ``gnmt`` — ``((5 + L) / 6) ** alpha`` (Wu et al. 2016);
            ``average`` — ``L ** alpha`` (``alpha=1`` is the per-token mean log-prob);
            ``none`` — 1.

    Returns:
        float tensor shaped like ``lengths``.
    """
    lengths = lengths.float()
    if kind == "gnmt":
        return ((5.0 + lengths) / 6.0) ** alpha
    if kind == "average":
        return lengths.clamp(min=1.0) ** alpha
    if kind == "none":
        return torch.ones_like(lengths)
    raise ValueError(f"unknown length_penalty_kind {kind!r}; expected one of {LENGTH_PENALTY_KINDS}")


@torch.no_grad()
def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_lengths: Tensor,
    src_mask: Tensor | None = None,
    beam_size: int = 5,
    length_penalty: float = 0.6,
    length_penalty_kind: str = "gnmt",
    max_len_a: float = 1.5,
    max_len_b: int = 10,
) -> Hypotheses:
    """Decode a batch with beam search.

    Args:
        model: the seq2seq model (its ``encode`` / ``step_log_probs`` are used).
        src: (B, S) source ids; src_lengths: (B,); src_mask: (B, S) bool or None.
        beam_size: K >= 1.
        length_penalty: alpha >= 0 of :func:`length_penalty_factor`.
        length_penalty_kind: ``gnmt``, ``average`` or ``none``.
        max_len_a, max_len_b: each sentence may produce at most ``a * src_len + b`` tokens.

    Returns:
        :class:`Hypotheses` of the best hypothesis per sentence: tokens (B, T') (eos included when
        produced, pad after), lengths (B,), scores (B,) raw total log-probs (no penalty) and
        attention (B, T', S).
    """
    from attnlab.models.seq2seq import NEG_INF, Hypotheses

    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    if length_penalty < 0:
        # The early-stopping bound assumes the penalty grows with length.
        raise ValueError(f"length_penalty must be >= 0, got {length_penalty}")
    length_penalty_factor(torch.ones(1), length_penalty, length_penalty_kind)  # validates the kind

    memory, state = model.encode(src, src_lengths, src_mask)
    b, s = src.shape
    k = beam_size
    dev = src.device
    limits = model.max_lengths(src_lengths, max_len_a, max_len_b)  # (B,)
    max_steps = int(limits.max())

    # Every sentence's rows are repeated K times: row b*K + j is beam j of sentence b.
    rows = torch.arange(b, device=dev).repeat_interleave(k)
    memory = memory.index_select(rows)
    state = state.index_select(rows)
    batch_base = torch.arange(b, device=dev)[:, None] * k  # (B, 1)
    ar = torch.arange(b, device=dev)

    # Only beam 0 is live at the start, otherwise the K identical beams would fill the beam.
    alive_scores = torch.full((b, k), NEG_INF, device=dev)
    alive_scores[:, 0] = 0.0
    alive_tokens = torch.empty(b, k, 0, dtype=torch.long, device=dev)
    alive_attn = torch.empty(b, k, 0, s, device=dev)
    prev = src.new_full((b * k,), model.bos_id)

    best_norm = torch.full((b,), float("-inf"), device=dev)
    best_raw = torch.zeros(b, device=dev)
    best_len = torch.zeros(b, dtype=torch.long, device=dev)
    best_tokens = torch.full((b, max_steps), model.pad_id, dtype=torch.long, device=dev)
    best_attn = torch.zeros(b, max_steps, s, device=dev)
    done = torch.zeros(b, dtype=torch.bool, device=dev)
    bound_lp = length_penalty_factor(limits, length_penalty, length_penalty_kind)  # (B,)
    valid_floor = NEG_INF / 2  # scores below this come from the dummy start beams or banned tokens

    def keep_if_better(improve: Tensor, norm: Tensor, raw: Tensor, tokens: Tensor, attn: Tensor) -> None:
        """Replace sentences' best finished hypothesis where ``improve`` (B,). tokens (B, L), attn (B, L, S)."""
        nonlocal best_norm, best_raw, best_len
        n = tokens.size(1)
        best_norm = torch.where(improve, norm, best_norm)
        best_raw = torch.where(improve, raw, best_raw)
        best_len = torch.where(improve, torch.full_like(best_len, n), best_len)
        best_tokens[improve] = model.pad_id
        best_tokens[improve, :n] = tokens[improve]
        best_attn[improve] = 0.0
        best_attn[improve, :n] = attn[improve]

    for t in range(max_steps):
        logp, state, weights = model.step_log_probs(prev, state, memory)  # (B*K, V), (B*K, S)
        vocab = logp.size(-1)
        weights = weights.view(b, k, s)
        cand = (alive_scores.unsqueeze(-1) + logp.view(b, k, vocab)).view(b, k * vocab)
        n_cand = min(2 * k, k * vocab)
        top_scores, top_idx = cand.topk(n_cand, dim=1)  # (B, 2K), sorted
        top_beam = torch.div(top_idx, vocab, rounding_mode="floor")
        top_tok = top_idx % vocab
        lp_now = float(length_penalty_factor(torch.tensor(float(t + 1)), length_penalty, length_penalty_kind))

        # 1) eos among the top K finishes a hypothesis.
        is_eos = top_tok == model.eos_id
        finishing = is_eos[:, :k] & (top_scores[:, :k] > valid_floor)
        fin_norm = torch.where(finishing, top_scores[:, :k] / lp_now, torch.full_like(top_scores[:, :k], float("-inf")))
        fin_best, fin_pos = fin_norm.max(dim=1)
        improve = (fin_best > best_norm) & ~done
        if bool(improve.any()):
            src_beam = top_beam[ar, fin_pos]
            tokens = torch.cat([alive_tokens[ar, src_beam], src.new_full((b, 1), model.eos_id)], dim=1)
            attn = torch.cat([alive_attn[ar, src_beam], weights[ar, src_beam].unsqueeze(1)], dim=1)
            keep_if_better(improve, fin_best, top_scores[ar, fin_pos], tokens, attn)

        # 2) the K best non-eos continuations stay alive.
        alive_cand = top_scores.masked_fill(is_eos, 2 * NEG_INF)
        alive_scores, pos = alive_cand.topk(k, dim=1)
        new_beam = top_beam.gather(1, pos)  # (B, K)
        new_tok = top_tok.gather(1, pos)
        state = state.index_select((batch_base + new_beam).view(-1))
        alive_tokens = torch.cat(
            [alive_tokens.gather(1, new_beam[:, :, None].expand(-1, -1, t)), new_tok.unsqueeze(-1)], dim=2
        )
        step_attn = weights.gather(1, new_beam[:, :, None].expand(-1, -1, s)).unsqueeze(2)
        alive_attn = torch.cat(
            [alive_attn.gather(1, new_beam[:, :, None, None].expand(-1, -1, t, s)), step_attn], dim=2
        )
        prev = new_tok.view(-1)

        # 3) sentences at their length budget finish their alive hypotheses as they are.
        at_limit = (limits == t + 1) & ~done
        if bool(at_limit.any()):
            lim_norm = torch.where(
                alive_scores > valid_floor, alive_scores / lp_now, torch.full_like(alive_scores, float("-inf"))
            )
            lim_best, lim_pos = lim_norm.max(dim=1)
            improve = at_limit & (lim_best > best_norm)
            keep_if_better(
                improve, lim_best, alive_scores[ar, lim_pos], alive_tokens[ar, lim_pos], alive_attn[ar, lim_pos]
            )
            done = done | at_limit

        # 4) early stop: the best alive hypothesis cannot beat the best finished one any more.
        done = done | (best_norm >= alive_scores[:, 0] / bound_lp)
        if bool(done.all()):
            break

    used = int(best_len.max().clamp(min=1))
    return Hypotheses(best_tokens[:, :used], best_len, best_raw, best_attn[:, :used])
