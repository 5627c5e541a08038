"""``build_attention``: one entry point from a config dict to an attention module.

Models receive the ``attention`` config group as a plain dict and call::

    build_attention(**attention_cfg, query_dim=..., key_dim=..., value_dim=...)

so a sweep over ``attention=additive,dot,general,multihead,none`` needs no
model changes.
"""

from __future__ import annotations

from typing import Any

from attnlab.attention.additive import AdditiveAttention
from attnlab.attention.base import Attention
from attnlab.attention.luong import DotAttention, GeneralAttention
from attnlab.attention.mean import MeanAttention
from attnlab.attention.multihead import MultiHeadAttention

__all__ = ["ATTENTION_KINDS", "SHARED_OPTIONS", "build_attention"]

#: Valid ``kind`` values, in the order they are documented.
ATTENTION_KINDS: tuple[str, ...] = ("additive", "dot", "general", "multihead", "none")

#: Options any kind accepts. Each kind uses the ones that apply to it and ignores
#: the rest, so one model config can be swept across kinds; anything outside this
#: set is a typo and an error.
SHARED_OPTIONS: frozenset[str] = frozenset({"hidden_dim", "num_heads", "chunk_size", "dropout"})

_CLASSES: dict[str, type[Attention]] = {
    "additive": AdditiveAttention,
    "dot": DotAttention,
    "general": GeneralAttention,
    "multihead": MultiHeadAttention,
    "none": MeanAttention,
}

_USED_OPTIONS: dict[str, frozenset[str]] = {
    "additive": frozenset({"hidden_dim", "chunk_size", "dropout"}),
    "dot": frozenset({"dropout"}),
    "general": frozenset({"dropout"}),
    "multihead": frozenset({"num_heads", "dropout"}),
    "none": frozenset(),
}


def _positive_int(name: str, value: Any) -> int:
    # bool is an int subclass; `hidden_dim: true` in a yaml is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"attention option {name} must be a positive int, got {value!r}")
    return value


def _validate(options: dict[str, Any]) -> dict[str, Any]:
    """Type/range checks for the shared options (also for ignored ones: a bad value is still a bad config)."""
    checked = dict(options)
    for name in ("hidden_dim", "num_heads"):
        if name in checked:
            checked[name] = _positive_int(name, checked[name])
    if checked.get("chunk_size") is not None:
        checked["chunk_size"] = _positive_int("chunk_size", checked["chunk_size"])
    if "dropout" in checked:
        p = checked["dropout"]
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= float(p) < 1.0:
            raise ValueError(f"attention option dropout must be a float in [0, 1), got {p!r}")
        checked["dropout"] = float(p)
    return checked


def build_attention(
    kind: str,
    query_dim: int,
    key_dim: int,
    value_dim: int | None = None,
    **options: Any,
) -> Attention:
    """Build an attention module.

    Args:
        kind: one of :data:`ATTENTION_KINDS`:
            ``additive`` (Bahdanau), ``dot`` / ``general`` (Luong, unscaled),
            ``multihead`` (scaled dot-product, learned projections) or
            ``none`` (masked mean over keys, the baseline).
        query_dim: ``Dq``, feature size of the queries ``(B, Tq, Dq)``.
        key_dim: ``Dk``, feature size of the keys ``(B, Tk, Dk)``.
        value_dim: ``Dv`` of the values ``(B, Tk, Dv)``; None when values are the keys.
        **options: from :data:`SHARED_OPTIONS` -- ``hidden_dim`` (additive,
            default 128), ``num_heads`` (multihead, default 4), ``chunk_size``
            (additive, default None = automatic), ``dropout`` (default 0.0;
            all kinds but ``none``). Options a kind does not use are ignored.

    Returns:
        An :class:`Attention`; its ``out_dim`` is the context's feature size
        (``Dv`` for every kind except ``multihead``, where it is
        ``value_dim if value_dim is not None else query_dim``).

    Raises:
        ValueError: unknown ``kind`` (the message lists the valid kinds), an
            option outside :data:`SHARED_OPTIONS` (named in the message), a bad
            option value or dimension, or ``dot`` with ``query_dim != key_dim``.
    """
    if kind not in _CLASSES:
        raise ValueError(f"unknown attention kind {kind!r}; valid kinds: {', '.join(ATTENTION_KINDS)}")
    unknown = sorted(set(options) - SHARED_OPTIONS)
    if unknown:
        raise ValueError(
            f"unknown attention option(s) {', '.join(unknown)} for kind {kind!r}; "
            f"valid options: {', '.join(sorted(SHARED_OPTIONS))}"
        )
    query_dim = _positive_int("query_dim", query_dim)
    key_dim = _positive_int("key_dim", key_dim)
    if value_dim is not None:
        value_dim = _positive_int("value_dim", value_dim)
    options = _validate(options)
    used = {name: value for name, value in options.items() if name in _USED_OPTIONS[kind]}
    return _CLASSES[kind](query_dim, key_dim, value_dim, **used)
