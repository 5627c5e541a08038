"""The shared attention block: one interface, several scorings, one factory.

    from attnlab.attention import build_attention
    attn = build_attention("additive", query_dim=256, key_dim=512, hidden_dim=128)
    context, weights = attn(query, keys, values=None, mask=None, need_weights=True)
    # query (B, Tq, Dq), keys (B, Tk, Dk), values (B, Tk, Dv) defaulting to keys,
    # mask (B, Tk) bool True = may attend -> context (B, Tq, attn.out_dim), weights (B, Tq, Tk)
    prepared = attn.prepare(keys, values, mask)  # key-side work once, for many separate queries
    context, weights = attn(query_t, prepared)

Imports torch; only heavy code paths (models) import this package.
"""

from attnlab.attention.additive import AdditiveAttention
from attnlab.attention.base import Attention, PreparedKeys, ScoredAttention, masked_softmax
from attnlab.attention.factory import ATTENTION_KINDS, SHARED_OPTIONS, build_attention
from attnlab.attention.luong import DotAttention, GeneralAttention
from attnlab.attention.mean import MeanAttention
from attnlab.attention.multihead import MultiHeadAttention

__all__ = [
    "ATTENTION_KINDS",
    "SHARED_OPTIONS",
    "AdditiveAttention",
    "Attention",
    "DotAttention",
    "GeneralAttention",
    "MeanAttention",
    "MultiHeadAttention",
    "PreparedKeys",
    "ScoredAttention",
    "build_attention",
    "masked_softmax",
]
