"""How the models behave under autocast (``trainer.precision=bf16-mixed``): what stays float32.

Autocast runs matmuls and convolutions in bf16; results that are summed over many terms -- losses,
box regressions decoded into pixels, scores ranked by NMS -- are kept in float32 here, as CUDA
autocast keeps its reductions and losses in float32.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["autocast_dtype", "float32_outputs", "to_float32"]


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """The autocast dtype active for ``device``'s type, or None when autocast is off there."""
    kind = device.type
    if kind not in ("cpu", "cuda", "xpu", "mps"):
        return None
    try:
        enabled, dtype = torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)
    except TypeError:  # torch < 2.4: per-device functions
        if kind == "cpu":
            enabled, dtype = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
        else:
            enabled, dtype = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    return dtype if enabled else None


def to_float32(value: Any) -> Any:
    """Floating tensors below float32 in nested dicts / lists / tuples cast to float32 (others kept)."""
    if isinstance(value, torch.Tensor):
        low = value.is_floating_point() and value.dtype not in (torch.float32, torch.float64)
        return value.float() if low else value
    if isinstance(value, dict):
        return type(value)((k, to_float32(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(to_float32(v) for v in value)
    return value


def _outputs_to_float32(module: nn.Module, args: Any, output: Any) -> Any:
    return to_float32(output)


def float32_outputs(module: nn.Module) -> nn.Module:
    """Make ``module`` return float32 whatever autocast computed it in (a forward hook; no new
    parameters, so state-dict keys are unchanged). Returns the module."""
    module.register_forward_hook(_outputs_to_float32)
    return module
