"""Decoding for :class:`attnlab.models.seq2seq.Seq2Seq`: hypotheses, greedy search and batched beam search.

The settings (beam size, length penalty, length budget, hard cap) have no defaults here: they come
from the model config (``conf/model/seq2seq_attn.yaml``) through the translation task, so they are
written in one place. Decoding needs only what :class:`StepModel` names, so this module imports
nothing from ``seq2seq`` (which imports :data:`NEG_INF` from here: one way).

Beam search decodes every sentence of the batch and every beam together as one (B*K) batch;
there is no Python loop over sentences, only over output positions.

Algorithm (close to fairseq's):
    * each step scores all K*V continuations of the K alive hypotheses and keeps the 2K best;
    * an ``eos`` continuation ranked within the top K *finishes* a hypothesis: it is compared,
      length-penalised, with the sentence's best finished one so far;
    * the K best non-``eos`` continuations stay alive (so the beam never shrinks);
    * a sentence reaching its length budget ``min(a*src_len+b, max_len)`` finishes its alive hypotheses
      as they are;
    * a sentence stops early once no alive hypothesis can beat its best finished one: log-probs only
      decrease, so for a length penalty that grows with length the best reachable normalised
      score is ``alive_score / lp(budget)``.

Restricting finishing to the top K makes ``beam_size=1`` (with no length penalty) identical to
greedy decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

__all__ = [
    "LENGTH_PENALTY_KINDS",
    "NEG_INF",
    "Hypotheses",
    "StepModel",
    "beam_search",
    "decode",
    "decode_budget",
    "greedy_decode",
    "length_penalty_factor",
]

# A finite "minus infinity": -inf would give NaN in (-inf) - (-inf) during beam bookkeeping.
NEG_INF = -1e9
LENGTH_PENALTY_KINDS = ("gnmt", "average", "none")


@dataclass
class Hypotheses:
    """Decoded output for a batch.

    Attributes:
        tokens: (B, Tmax) token ids, ``eos`` included when produced, ``pad`` after it.
        lengths: (B,) number of tokens in ``tokens`` (eos included when produced).
        scores: (B,) total log-probability of each hypothesis (no length penalty).
        attention: (B, Tmax, S) attention weights of each produced token (zeros at padding).
    """

    tokens: Tensor
    lengths: Tensor
    scores: Tensor
    attention: Tensor


class StepModel(Protocol):
    """What decoding needs of a model (:class:`attnlab.models.seq2seq.Seq2Seq` has it).

    ``encode`` returns the memory and the first decoder state, both with ``index_select(rows)``;
    ``step_log_probs`` maps the previous tokens (N,) to log-probs (N, V), the next state and the
    attention weights (N, S).
    """

    pad_id: int
    bos_id: int
    eos_id: int

    def encode(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor | None = None) -> tuple[Any, Any]: ...

    def step_log_probs(self, tokens: Tensor, state: Any, memory: Any) -> tuple[Tensor, Any, Tensor]: ...


def decode_budget(src_lengths: Tensor, max_len_a: float, max_len_b: int, max_len: int) -> Tensor:
    """Per-sentence output budget ``a * src_len + b`` (B,), at least 1 and at most ``max_len``:
    the hard cap keeps one very long source from making a whole batch decode for minutes."""
    if max_len < 1:
        raise ValueError(f"max_len (the absolute decoding cap) must be >= 1, got {max_len}")
    return (src_lengths.float() * max_len_a + max_len_b).clamp(min=1, max=max_len).long()


@torch.no_grad()
def greedy_decode(
    model: StepModel,
    src: Tensor,
    src_lengths: Tensor,
    src_mask: Tensor | None = None,
    *,
    max_len_a: float,
    max_len_b: int,
    max_len: int,
) -> Hypotheses:
    """Greedy decoding, vectorised over the batch.

    Args:
        model: the seq2seq model (its ``encode`` / ``step_log_probs`` are used).
        src: (B, S), src_lengths: (B,), src_mask: (B, S) optional.
        max_len_a, max_len_b, max_len: a sentence stops after ``min(a * src_len + b, max_len)`` tokens.

    Returns:
        :class:`Hypotheses` with tokens (B, T'), lengths, scores (sum of log-probs), attention (B, T', S).
    """
    memory, state = model.encode(src, src_lengths, src_mask)
    b = src.size(0)
    limits = decode_budget(src_lengths, max_len_a, max_len_b, max_len)
    prev = src.new_full((b,), model.bos_id)
    done = torch.zeros(b, dtype=torch.bool, device=src.device)
    lengths = torch.zeros(b, dtype=torch.long, device=src.device)
    scores = torch.zeros(b, device=src.device)
    tokens: list[Tensor] = []
    attn: list[Tensor] = []
    for t in range(int(limits.max())):
        logp, state, weights = model.step_log_probs(prev, state, memory)
        best_lp, tok = logp.max(dim=-1)
        tok = tok.masked_fill(done, model.pad_id)
        scores = scores + best_lp.masked_fill(done, 0.0)
        lengths = lengths + (~done).long()
        tokens.append(tok)
        attn.append(weights.masked_fill(done[:, None], 0.0))
        done = done | (tok == model.eos_id) | (t + 1 >= limits)
        prev = tok
        if bool(done.all()):
            break
    return Hypotheses(torch.stack(tokens, 1), lengths, scores, torch.stack(attn, 1))


def decode(
    model: StepModel,
    src: Tensor,
    src_lengths: Tensor,
    src_mask: Tensor | None = None,
    *,
    beam_size: int,
    length_penalty: float,
    length_penalty_kind: str,
    max_len_a: float,
    max_len_b: int,
    max_len: int,
) -> Hypotheses:
    """Greedy decoding when ``beam_size <= 1`` (the penalty does not matter then), else beam search."""
    if beam_size <= 1:
        return greedy_decode(
            model, src, src_lengths, src_mask, max_len_a=max_len_a, max_len_b=max_len_b, max_len=max_len
        )
    return beam_search(
        model,
        src,
        src_lengths,
        src_mask,
        beam_size=beam_size,
        length_penalty=length_penalty,
        length_penalty_kind=length_penalty_kind,
        max_len_a=max_len_a,
        max_len_b=max_len_b,
        max_len=max_len,
    )


def length_penalty_factor(lengths: Tensor, alpha: float, kind: str) -> Tensor:
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


# The four phases of a step (numbered in the body) share a dozen per-step tensors; split, they would only pass them on.
# long: one loop over output positions, with its set-up
@torch.no_grad()
def beam_search(
    model: StepModel,
    src: Tensor,
    src_lengths: Tensor,
    src_mask: Tensor | None = None,
    *,
    beam_size: int,
    length_penalty: float,
    length_penalty_kind: str,
    max_len_a: float,
    max_len_b: int,
    max_len: int,
) -> Hypotheses:
    """Decode a batch with beam search.

    Args:
        model: the seq2seq model (its ``encode`` / ``step_log_probs`` are used).
        src: (B, S) source ids; src_lengths: (B,); src_mask: (B, S) bool or None.
        beam_size: K >= 1.
        length_penalty: alpha >= 0 of :func:`length_penalty_factor`.
        length_penalty_kind: ``gnmt``, ``average`` or ``none``.
        max_len_a, max_len_b, max_len: each sentence may produce at most ``min(a * src_len + b, max_len)``
            tokens.

    Returns:
        :class:`Hypotheses` of the best hypothesis per sentence: tokens (B, T') (eos included when
        produced, pad after), lengths (B,), scores (B,) raw total log-probs (no penalty) and
        attention (B, T', S).
    """
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
    limits = decode_budget(src_lengths, max_len_a, max_len_b, max_len)
    max_steps = int(limits.max())
    bound_lp = length_penalty_factor(limits, length_penalty, length_penalty_kind)  # (B,)
    lp_steps = length_penalty_factor(torch.arange(1, max_steps + 1), length_penalty, length_penalty_kind).tolist()
    valid_floor = NEG_INF / 2  # scores below this come from the dummy start beams or banned tokens

    # The decoder state has K rows per sentence: row i*K + j is beam j of active sentence i. The
    # memory keeps one row per sentence, shared by its beams (see Decoder._attend). Sentences that
    # are done leave the batch (at the end of the loop); `active` maps the sentences that remain to
    # their row in the input batch.
    active = torch.arange(b, device=dev)
    state = state.index_select(active.repeat_interleave(k))

    # Only beam 0 is live at the start, otherwise the K identical beams would fill the beam.
    alive_scores = torch.full((b, k), NEG_INF, device=dev)
    alive_scores[:, 0] = 0.0
    prev = src.new_full((b * k,), model.bos_id)

    # Histories (input-batch rows) instead of growing (B, K, t, S) copies of every alive hypothesis:
    # step t's chosen tokens, the beam (of step t-1) each came from, and the attention of every
    # step-t-1 beam. Hypotheses are rebuilt once, at the end, by following the back-pointers.
    # Zero-filled: rows of sentences that left the batch stay valid indices.
    tok_hist = torch.zeros(max_steps, b, k, dtype=torch.long, device=dev)
    from_hist = torch.zeros(max_steps, b, k, dtype=torch.long, device=dev)
    attn_hist = torch.zeros(max_steps, b, k, s, device=dev)

    # Each sentence's best finished hypothesis so far, as a reference into the histories: the
    # alive beam `beam` after step `end - 1`, followed by eos at step `end` when `eos`.
    best = _Finished.empty(b, dev)  # active sentences
    final = _Finished.empty(b, dev)  # input-batch rows, filled as sentences leave the batch
    done = torch.zeros(b, dtype=torch.bool, device=dev)

    steps = 0
    for t in range(max_steps):
        steps = t + 1
        n = active.numel()
        full = n == b  # no sentence has left yet: plain slices instead of indexed writes
        ar = torch.arange(n, device=dev)
        logp, state, weights = model.step_log_probs(prev, state, memory)  # (n*K, V), (n*K, S)
        vocab = logp.size(-1)
        weights = weights.view(n, k, s)
        if full:
            attn_hist[t] = weights
        else:
            attn_hist[t, active] = weights.to(attn_hist.dtype)
        cand = (alive_scores.unsqueeze(-1) + logp.view(n, k, vocab)).view(n, k * vocab)
        top_scores, top_idx = cand.topk(min(2 * k, k * vocab), dim=1)  # (n, 2K), sorted
        top_beam = torch.div(top_idx, vocab, rounding_mode="floor")
        top_tok = top_idx % vocab
        lp_now = lp_steps[t]

        # 1) eos among the top K finishes a hypothesis.
        is_eos = top_tok == model.eos_id
        finishing = is_eos[:, :k] & (top_scores[:, :k] > valid_floor)
        fin_norm = torch.where(finishing, top_scores[:, :k] / lp_now, torch.full_like(top_scores[:, :k], float("-inf")))
        fin_best, fin_pos = fin_norm.max(dim=1)
        improve = (fin_best > best.norm) & ~done
        if bool(improve.any()):
            best.update(improve, fin_best, top_scores[ar, fin_pos], t, top_beam[ar, fin_pos], True)

        # 2) the K best non-eos continuations stay alive.
        alive_cand = top_scores.masked_fill(is_eos, 2 * NEG_INF)
        alive_scores, pos = alive_cand.topk(k, dim=1)
        new_beam = top_beam.gather(1, pos)  # (n, K)
        new_tok = top_tok.gather(1, pos)
        if full:
            from_hist[t], tok_hist[t] = new_beam, new_tok
        else:
            from_hist[t, active], tok_hist[t, active] = new_beam, new_tok
        state = state.index_select((ar[:, None] * k + new_beam).view(-1))
        prev = new_tok.view(-1)

        # 3) sentences at their length budget finish their alive hypotheses as they are.
        at_limit = (limits == t + 1) & ~done
        if bool(at_limit.any()):
            lim_norm = torch.where(
                alive_scores > valid_floor, alive_scores / lp_now, torch.full_like(alive_scores, float("-inf"))
            )
            lim_best, lim_pos = lim_norm.max(dim=1)
            improve = at_limit & (lim_best > best.norm)
            best.update(improve, lim_best, alive_scores[ar, lim_pos], t + 1, lim_pos, False)
            done = done | at_limit

        # 4) early stop: the best alive hypothesis cannot beat the best finished one any more.
        done = done | (best.norm >= alive_scores[:, 0] / bound_lp)
        n_done = int(done.sum())
        if n_done == n:
            break
        # Sentences that are done leave the batch, so the steps left run on fewer rows. Copying
        # the memory and state costs about as much as a step, so wait until a quarter can go.
        if n_done * 4 >= n:
            keep = ~done
            final.take(active[done], best, done)
            active, best = active[keep], best.select(keep)
            rows = (ar[keep][:, None] * k + torch.arange(k, device=dev)).view(-1)
            memory, state, prev = memory.index_select(ar[keep]), state.index_select(rows), prev[rows]
            alive_scores, limits, bound_lp, done = alive_scores[keep], limits[keep], bound_lp[keep], done[keep]

    final.take(active, best, torch.ones_like(done))
    return _backtrack(final, tok_hist[:steps], from_hist[:steps], attn_hist[:steps], model.eos_id, model.pad_id)


class _Finished:
    """Per sentence, the best finished hypothesis: normalised and raw score and where it is in the
    step histories (alive beam ``beam`` after step ``end - 1``, plus ``eos`` at step ``end``)."""

    def __init__(self, norm: Tensor, raw: Tensor, end: Tensor, beam: Tensor, eos: Tensor) -> None:
        self.norm, self.raw, self.end, self.beam, self.eos = norm, raw, end, beam, eos

    @classmethod
    def empty(cls, n: int, device: torch.device) -> _Finished:
        zeros = torch.zeros(n, dtype=torch.long, device=device)
        return cls(
            torch.full((n,), float("-inf"), device=device),
            torch.zeros(n, device=device),
            zeros,
            zeros.clone(),
            torch.zeros(n, dtype=torch.bool, device=device),
        )

    def update(self, improve: Tensor, norm: Tensor, raw: Tensor, end: int, beam: Tensor, eos: bool) -> None:
        """Replace the rows where ``improve`` (n,) with a new hypothesis."""
        self.norm = torch.where(improve, norm, self.norm)
        self.raw = torch.where(improve, raw, self.raw)
        self.end = torch.where(improve, torch.full_like(self.end, end), self.end)
        self.beam = torch.where(improve, beam, self.beam)
        self.eos = torch.where(improve, torch.full_like(self.eos, eos), self.eos)

    def select(self, rows: Tensor) -> _Finished:
        return _Finished(self.norm[rows], self.raw[rows], self.end[rows], self.beam[rows], self.eos[rows])

    def take(self, where: Tensor, other: _Finished, rows: Tensor) -> None:
        """Copy ``other``'s ``rows`` (bool mask) into this one's rows ``where`` (indices)."""
        for name in ("norm", "raw", "end", "beam", "eos"):
            getattr(self, name)[where] = getattr(other, name)[rows]


def _backtrack(
    best: _Finished, tok_hist: Tensor, from_hist: Tensor, attn_hist: Tensor, eos_id: int, pad_id: int
) -> Hypotheses:
    """Rebuild each sentence's chosen hypothesis from the step histories.

    Args:
        best: (B,) per sentence: the hypothesis is alive beam ``beam`` after step ``end - 1`` (its
            first ``end`` tokens), followed by ``eos`` produced at step ``end`` from that beam when
            ``eos``; ``raw`` is its total log-probability.
        tok_hist, from_hist: (T, B, K) chosen tokens per step and the beam of the step before each came from.
        attn_hist: (T, B, K, S) attention of each beam at each step, indexed by the beam it extended.
    """
    n_steps, b, _, s = attn_hist.shape
    end, beam, eos = best.end, best.beam, best.eos
    lengths = end + eos.long()
    used = int(lengths.max().clamp(min=1))
    dev = end.device
    tokens = torch.full((b, used), pad_id, dtype=torch.long, device=dev)
    attention = torch.zeros(b, used, s, device=dev)
    ar = torch.arange(b, device=dev)
    if bool(eos.any()):
        rows = ar[eos]
        tokens[rows, end[eos]] = eos_id
        attention[rows, end[eos]] = attn_hist[end[eos], rows, beam[eos]]
    cur = beam.clone()
    for u in range(int(end.max()) - 1, -1, -1):
        inside = u < end
        origin = from_hist[u, ar, cur]
        tokens[:, u] = torch.where(inside, tok_hist[u, ar, cur], tokens[:, u])
        attention[:, u] = torch.where(inside[:, None], attn_hist[u, ar, origin], attention[:, u])
        cur = torch.where(inside, origin, cur)
    return Hypotheses(tokens, lengths, best.raw, attention)
