"""Attentional GRU encoder-decoder for translation (Bahdanau et al. 2014; Luong et al. 2015).

Plain ``nn.Module`` code: no Lightning here. The attention block comes from
:func:`attnlab.attention.build_attention`, so the same model runs with every
attention kind, including the ``none`` baseline (a mean over encoder states).

Shape legend used in the docstrings:
    B batch, S source length, T target length, V target vocabulary,
    H ``hidden_dim``, L ``num_layers``, E ``emb_dim``, K beam size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from attnlab.attention import PreparedKeys, build_attention
from attnlab.models.decoding import NEG_INF
from attnlab.models.recurrent import GRUCell, bidirectional_gru

__all__ = ["DecoderState", "Encoder", "Decoder", "Memory", "Seq2Seq"]


@dataclass
class Memory:
    """What the decoder attends over, computed once per batch.

    Attributes:
        prepared: keys (B, S, H) -- the encoder states projected to the decoder size --, values
            (B, S, 2H) -- the encoder states themselves -- and mask (B, S) (True at real source
            tokens), with the attention block's key-side work done once (``Attention.prepare``),
            so that each decoder step only does the query side.
    """

    prepared: PreparedKeys

    @property
    def keys(self) -> Tensor:
        return self.prepared.keys

    @property
    def values(self) -> Tensor:
        return self.prepared.values

    @property
    def mask(self) -> Tensor:
        assert self.prepared.mask is not None  # Decoder.memory always passes one
        return self.prepared.mask

    def index_select(self, index: Tensor) -> Memory:
        """Rows ``index`` (N,) of every tensor (used to expand over beams)."""
        return Memory(self.prepared.index_select(index))


@dataclass
class DecoderState:
    """Recurrent state carried between decoder steps.

    Attributes:
        hidden: (L, N, H) GRU hidden state per layer.
        feed: (N, H) previous attentional vector (input feeding).
    """

    hidden: Tensor
    feed: Tensor

    def index_select(self, index: Tensor) -> DecoderState:
        """Rows ``index`` (M,) of the state (beam reordering)."""
        return DecoderState(self.hidden.index_select(1, index), self.feed.index_select(0, index))


class Encoder(nn.Module):
    """Embedding + bidirectional GRU over padded batches (padding kept out of both directions).

    Args:
        vocab_size: source vocabulary size.
        emb_dim: embedding size E.
        hidden_dim: GRU size H per direction (outputs are 2H).
        num_layers: stacked GRU layers L.
        dropout: dropout on embeddings and between GRU layers.
        pad_id: padding id (zero embedding).
    """

    def __init__(
        self, vocab_size: int, emb_dim: int, hidden_dim: int, num_layers: int, dropout: float, pad_id: int
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_id)
        self.dropout = nn.Dropout(dropout)
        self.rnn = nn.GRU(
            emb_dim,
            hidden_dim,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.num_layers = num_layers
        self.hidden_dim = hidden_dim

    def forward(self, src: Tensor, src_lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Encode a padded batch.

        Args:
            src: (B, S) source ids, padded.
            src_lengths: (B,) true lengths (>= 1).

        Returns:
            outputs: (B, S, 2H) per-token states, zeros at padding.
            final: (L, B, 2H) last forward and backward states of each layer, concatenated.
        """
        emb = self.dropout(self.embedding(src))
        # Padding is kept out of both directions' recurrences (as packing would), so a sentence's
        # encoding does not depend on how long its batch-mates are; bf16 under autocast.
        outputs, h_n = bidirectional_gru(self.rnn, emb, src_lengths)
        # h_n: (L*2, B, H) ordered layer-major, direction-minor.
        h_n = h_n.view(self.num_layers, 2, src.size(0), self.hidden_dim)
        final = torch.cat([h_n[:, 0], h_n[:, 1]], dim=-1)
        return outputs, final


class Decoder(nn.Module):
    """GRU decoder with attention over the encoder states and input feeding.

    One step (Luong et al. 2015, sec. 3.3):
        x_t  = [emb(y_{t-1}); h~_{t-1}]                  input feeding
        s_t  = GRU(x_t, s_{t-1})                          stacked GRU cells
        c_t  = attention(query=s_t^top, keys=encoder states, mask)
        h~_t = tanh(W_c [c_t; s_t^top])                   attentional vector
        p(y_t) = softmax(W_o dropout(h~_t))

    Args:
        vocab_size: target vocabulary size V.
        emb_dim: embedding size E.
        hidden_dim: decoder size H.
        memory_dim: encoder output size (2H for the bidirectional encoder).
        num_layers: stacked GRU cells L.
        dropout: dropout on embeddings, between layers and before the output layer.
        pad_id: padding id.
        attention: kwargs for :func:`build_attention` (``kind`` plus options).
    """

    def __init__(
        self,
        vocab_size: int,
        emb_dim: int,
        hidden_dim: int,
        memory_dim: int,
        num_layers: int,
        dropout: float,
        pad_id: int,
        attention: dict[str, Any],
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, emb_dim, padding_idx=pad_id)
        self.cells = nn.ModuleList(
            GRUCell(emb_dim + hidden_dim if i == 0 else hidden_dim, hidden_dim) for i in range(num_layers)
        )
        # Keys are the encoder states projected once per batch to the decoder size H: every kind then
        # works (``dot`` needs query_dim == key_dim) and per-step key work (additive's W_k k) runs on
        # H instead of 2H features. Values stay the full 2H encoder states.
        self.key_proj = nn.Linear(memory_dim, hidden_dim, bias=False)
        self.attention = build_attention(
            **dict(attention), query_dim=hidden_dim, key_dim=hidden_dim, value_dim=memory_dim
        )
        self.combine = nn.Linear(self.attention.out_dim + hidden_dim, hidden_dim)
        self.out = nn.Linear(hidden_dim, vocab_size)
        self.dropout = nn.Dropout(dropout)
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers

    def memory(self, encoder_outputs: Tensor, mask: Tensor) -> Memory:
        """Encoder outputs (B, S, 2H) and mask (B, S) -> the :class:`Memory` every step attends over."""
        keys = self.key_proj(encoder_outputs)
        return Memory(self.attention.prepare(keys, encoder_outputs, mask))

    def _attend(self, query: Tensor, memory: Memory, need_weights: bool) -> tuple[Tensor, Tensor | None]:
        """query (N, H) -> context (N, out_dim), weights (N, S) or None.

        ``memory`` has M rows with N = M * G: query rows m*G .. m*G+G-1 all attend memory row m (the
        G beams of one sentence). They go in as G queries of one attention call, so the memory is
        never repeated per beam: beam search copies and reorders only the decoder state.
        """
        n, rows = query.size(0), memory.mask.size(0)
        if n % rows:
            raise ValueError(f"{n} decoder rows cannot share a memory of {rows} rows")
        ctx, weights = self.attention(query.view(rows, n // rows, -1), memory.prepared, need_weights=need_weights)
        return ctx.reshape(n, -1), (weights.reshape(n, -1) if weights is not None else None)

    def step(
        self, emb: Tensor, state: DecoderState, memory: Memory, need_weights: bool = True
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One decoder step from an already embedded input.

        Args:
            emb: (N, E) embedded previous target token (dropout applied by the caller).
            state: hidden (L, N, H) and feed (N, H).
            memory: encoder states for the N rows, or for N / G rows shared by groups of G
                consecutive rows (the beams of one sentence).
            need_weights: keep the attention weights.

        Returns:
            attentional vector h~ (N, H), the new state, attention weights (N, S) or None.
        """
        x = torch.cat([emb, state.feed], dim=-1)
        new_hidden = []
        for i, cell in enumerate(self.cells):
            h = cell(x, state.hidden[i])  # follows autocast; the state stays float32
            new_hidden.append(h)
            x = self.dropout(h) if i + 1 < self.num_layers else h
        ctx, weights = self._attend(x, memory, need_weights)
        attn_vec = torch.tanh(self.combine(torch.cat([ctx, x], dim=-1)))
        return attn_vec, DecoderState(torch.stack(new_hidden), attn_vec), weights

    def logits(self, attn_vec: Tensor) -> Tensor:
        """Attentional vectors (..., H) -> vocabulary logits (..., V)."""
        return self.out(self.dropout(attn_vec))

    def forward(
        self, tgt_in: Tensor, state: DecoderState, memory: Memory, need_weights: bool = True
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced decoding.

        Args:
            tgt_in: (B, T) <bos> + target ids, padded.
            state: initial state from :meth:`Seq2Seq.init_state`.
            memory: encoder memory.
            need_weights: also return the attention weights.

        Returns:
            logits (B, T, V) and attention weights (B, T, S) (None if not needed).
        """
        # Embeddings for all steps in one call; only the recurrence is sequential.
        emb = self.dropout(self.embedding(tgt_in))
        vecs: list[Tensor] = []
        weights: list[Tensor] = []
        # unbind, not emb[:, t]: the backward of T slices would build T full-size (B, T, E) zero
        # gradients and add them up; unbind's backward is a single stack.
        for emb_t in emb.unbind(1):
            vec, state, w = self.step(emb_t, state, memory, need_weights)
            vecs.append(vec)
            if w is not None:
                weights.append(w)
        # A single output projection over all steps (the largest matmul) instead of T small ones.
        logits = self.logits(torch.stack(vecs, dim=1))
        return logits, (torch.stack(weights, dim=1) if need_weights else None)


class Seq2Seq(nn.Module):
    """Bidirectional-GRU encoder and attentional GRU decoder (decoding: :mod:`attnlab.models.decoding`).

    Args:
        src_vocab_size: source vocabulary size.
        tgt_vocab_size: target vocabulary size V.
        attention: kwargs for :func:`attnlab.attention.build_attention` (``kind`` + options).
        emb_dim: embedding size for both sides.
        hidden_dim: GRU size H (encoder per direction and decoder).
        num_layers: GRU layers in encoder and decoder.
        dropout: dropout probability.
        pad_id, bos_id, eos_id: special token ids of the target side (pad also of the source).
    """

    def __init__(
        self,
        src_vocab_size: int,
        tgt_vocab_size: int,
        attention: dict[str, Any],
        emb_dim: int = 128,
        hidden_dim: int = 256,
        num_layers: int = 1,
        dropout: float = 0.1,
        pad_id: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        self.tgt_vocab_size = tgt_vocab_size
        self.encoder = Encoder(src_vocab_size, emb_dim, hidden_dim, num_layers, dropout, pad_id)
        self.decoder = Decoder(
            tgt_vocab_size, emb_dim, hidden_dim, 2 * hidden_dim, num_layers, dropout, pad_id, attention
        )
        # Bahdanau et al. initialise the decoder from the encoder's summary through a tanh layer.
        self.bridge = nn.Linear(2 * hidden_dim, hidden_dim)

    # ------------------------------------------------------------------ encoding
    def encode(self, src: Tensor, src_lengths: Tensor, src_mask: Tensor | None = None) -> tuple[Memory, DecoderState]:
        """Encode and build the decoder's starting point.

        Args:
            src: (B, S) source ids. src_lengths: (B,). src_mask: (B, S) bool, derived from
                ``src_lengths`` when omitted.

        Returns:
            memory over (B, S, 2H) encoder states, initial decoder state (hidden (L, B, H), feed (B, H)).
        """
        if src_mask is None:
            src_mask = torch.arange(src.size(1), device=src.device)[None, :] < src_lengths[:, None]
        outputs, final = self.encoder(src, src_lengths)
        hidden = torch.tanh(self.bridge(final))
        feed = hidden.new_zeros(src.size(0), self.decoder.hidden_dim)
        return self.decoder.memory(outputs, src_mask), DecoderState(hidden, feed)

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor,
        tgt_in: Tensor,
        src_mask: Tensor | None = None,
        need_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced pass.

        Args:
            src: (B, S) source ids (+eos), pad 0. src_lengths: (B,). tgt_in: (B, T) <bos> + ids.
            src_mask: (B, S) bool True at real tokens (optional).
            need_weights: return attention weights (training can skip them).

        Returns:
            logits (B, T, V) and attention weights (B, T, S) (None when not needed).
        """
        memory, state = self.encode(src, src_lengths, src_mask)
        return self.decoder(tgt_in, state, memory, need_weights)

    # ------------------------------------------------------------------ decoding
    def step_log_probs(
        self, tokens: Tensor, state: DecoderState, memory: Memory
    ) -> tuple[Tensor, DecoderState, Tensor]:
        """One decoding step: previous tokens (N,) -> log-probs (N, V) (``pad``/``bos`` banned),
        new state, attention weights (N, S)."""
        emb = self.decoder.dropout(self.decoder.embedding(tokens))
        vec, state, weights = self.decoder.step(emb, state, memory, need_weights=True)
        assert weights is not None
        logp = torch.log_softmax(self.decoder.logits(vec).float(), dim=-1)
        # Never emit <pad> or <bos>: they would corrupt the length bookkeeping.
        logp[:, self.pad_id] = NEG_INF
        logp[:, self.bos_id] = NEG_INF
        return logp, state, weights

    def sequence_log_prob(self, src: Tensor, src_lengths: Tensor, tokens: Tensor) -> Tensor:
        """Total log-probability (B,) the model gives to ``tokens`` (B, T) (pad-terminated, eos
        included) — used to check that decoders report honest scores."""
        tgt_in = torch.cat([tokens.new_full((tokens.size(0), 1), self.bos_id), tokens[:, :-1]], dim=1)
        logits, _ = self(src, src_lengths, tgt_in, need_weights=False)
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        # Positions after the first eos are padding.
        is_eos = tokens == self.eos_id
        after_eos = (is_eos.long().cumsum(1) - is_eos.long()) > 0
        real = (tokens != self.pad_id) & ~after_eos
        return (logp * real).sum(1)
