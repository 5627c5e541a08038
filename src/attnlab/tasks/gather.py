"""Python objects gathered from every rank (``torch.distributed.all_gather_object``), for test outputs."""

from __future__ import annotations

from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["gather_lists"]


def gather_lists(items: list[T]) -> list[T]:
    """Every rank's ``items`` concatenated in rank order (collective: call on all ranks); ``items``
    itself when not distributed."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(items)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in part]
