"""GRU computations that follow autocast on every device, with exact packed-sequence semantics.

Why this exists: CUDA autocast runs RNNs (``gru_cell``, cuDNN's GRU) in the low-precision dtype, but
CPU autocast leaves them in float32, so on a CPU with AMX / AVX-512 BF16 the recurrences -- most of
a translation step -- gained nothing from ``precision=bf16-mixed``. These functions read the
parameters of an ordinary ``nn.GRU`` / of an ``nn.GRUCell`` subclass (state-dict keys are unchanged) and,
under autocast, run them in the autocast dtype, as CUDA autocast does; without autocast they are
the float32 computations of those modules.

:func:`bidirectional_gru` also replaces ``pack_padded_sequence``: on CPU, the backward pass of a
packed GRU fills a zero gradient of the whole packed input at every time step (measured: 40% of a
default translation step went to the encoder, half of it in those fills). Here each direction runs
over the padded batch, the backward one over each sentence reversed within its own length, so a
sentence's states never see padding -- the same outputs as packing, to float rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from attnlab.models.mixed_precision import autocast_dtype

__all__ = ["GRUCell", "bidirectional_gru"]


class GRUCell(nn.GRUCell):
    """``nn.GRUCell`` (same parameters and state-dict keys) whose step follows autocast.

    The two gate projections go through ``F.linear``, which autocast runs in its dtype (caching the
    cast weights for the whole forward); the gates are computed in the projections' dtype, and the
    new state is kept in float32 at least: a recurrent state rounded to bf16's 8 mantissa bits at
    every step would drift over a 50-token sentence. A module (not a function), so that
    ``compile.enabled`` can compile it.
    """

    def forward(self, x: Tensor, h: Tensor | None = None) -> Tensor:
        """One step: input ``x`` (N, I) and state ``h`` (N, H) -> new state (N, H)."""
        if h is None:
            h = x.new_zeros(x.size(0), self.hidden_size, dtype=torch.promote_types(x.dtype, torch.float32))
        gi = F.linear(x, self.weight_ih, self.bias_ih)
        gh = F.linear(h, self.weight_hh, self.bias_hh)
        i_r, i_z, i_n = gi.chunk(3, dim=1)
        h_r, h_z, h_n = gh.chunk(3, dim=1)
        reset = torch.sigmoid(i_r + h_r)
        update = torch.sigmoid(i_z + h_z)
        new = torch.tanh(i_n + reset * h_n)
        # Type promotion does the blend in float32 when h is float32 (no separate cast kernels).
        state = new + update * (h - new)
        return state.to(torch.promote_types(state.dtype, torch.float32))


def _reverse_within_lengths(lengths: Tensor, width: int) -> Tensor:
    """(B, S) gather index that reverses each row's first ``lengths[b]`` positions and keeps the rest."""
    pos = torch.arange(width, device=lengths.device)[None, :]
    real = lengths[:, None]
    return torch.where(pos < real, real - 1 - pos, pos)


def bidirectional_gru(rnn: nn.GRU, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
    """Run the bidirectional, batch-first ``rnn`` over padded ``x`` (B, S, E) with true ``lengths`` (B,).

    Returns:
        outputs (B, S, 2H) with zeros at padding (as ``pad_packed_sequence`` gives) and h_n
        (2L, B, H) ordered as ``nn.GRU`` orders it (layer-major, direction-minor), in the
        computation dtype (the autocast dtype under autocast).
    """
    if not (rnn.bidirectional and rnn.batch_first and rnn.bias):
        raise ValueError("bidirectional_gru needs nn.GRU(bidirectional=True, batch_first=True, bias=True)")
    batch, width = x.size(0), x.size(1)
    lengths = lengths.to(x.device)
    dtype = autocast_dtype(x.device)
    mask = (torch.arange(width, device=x.device)[None, :] < lengths[:, None]).unsqueeze(-1)  # (B, S, 1)
    reverse = _reverse_within_lengths(lengths, width).unsqueeze(-1)  # (B, S, 1)
    last = (lengths - 1).clamp(min=0)
    rows = torch.arange(batch, device=x.device)
    finals: list[Tensor] = []
    layer_in = x
    with torch.autocast(x.device.type, enabled=False):
        if dtype is not None:
            layer_in = layer_in.to(dtype)
        for layer in range(rnn.num_layers):
            outs = []
            for suffix in ("", "_reverse"):
                weights = [
                    getattr(rnn, f"{name}_l{layer}{suffix}")
                    for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
                ]
                if dtype is not None:
                    weights = [w.to(dtype) for w in weights]
                inp = layer_in if not suffix else layer_in.gather(1, reverse.expand(-1, -1, layer_in.size(2)))
                h0 = inp.new_zeros(1, batch, rnn.hidden_size)
                out, _ = torch.gru(inp, h0, weights, True, 1, 0.0, rnn.training, False, True)
                if suffix:
                    out = out.gather(1, reverse.expand(-1, -1, out.size(2)))
                out = out.masked_fill(~mask, 0.0)
                # The forward direction ends at the last real token; the backward one at position 0.
                finals.append(out[rows, last] if not suffix else out[:, 0])
                outs.append(out)
            layer_in = torch.cat(outs, dim=-1)
            if layer + 1 < rnn.num_layers and rnn.dropout > 0:
                layer_in = F.dropout(layer_in, p=rnn.dropout, training=rnn.training)
    return layer_in, torch.stack(finals)
