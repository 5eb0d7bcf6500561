"""The arithmetic of the heavy loops (``--precision``): a torch dtype, checked once against the device, and its autocast.

``float32`` is plain float32. ``bfloat16`` and ``float16`` run the convolutions and matrix products
under :func:`torch.autocast` (the parameters stay float32; what the results are built from, such
as LRP's ratios and relevance, channel sums and feature means, is computed in float32 by the code
that uses :func:`wide`). float16 is for CUDA only: its narrow range needs care (loss scaling in
training), and CPUs without native float16 units run it slower than float32.
"""

from __future__ import annotations

import contextlib

import torch

from .errors import HuddError

__all__ = ["PRECISIONS", "resolve_precision", "autocast", "wide"]

PRECISIONS = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_precision(name: str, device: torch.device, where: str = "--precision") -> torch.dtype:
    """The dtype of precision ``name`` on ``device``.

    Raises
    ------
    HuddError
        float16 off CUDA, or bfloat16 on a CUDA device without it; the message names ``where`` the
        value was given (the flag, or the hudd.toml key) and what to use instead.
    """
    dtype = PRECISIONS[name]
    if dtype == torch.float16 and device.type != "cuda":
        raise HuddError(f"{where} float16: float16 needs a CUDA device and this run is on the {device.type.upper()}; "
                        "use --precision bfloat16 (or float32) here, or --device cuda on a machine with a GPU")
    if dtype == torch.bfloat16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise HuddError(f"{where} bfloat16: this CUDA device has no bfloat16 arithmetic; use --precision float16 or float32")
    return dtype


def autocast(device: torch.device, dtype: torch.dtype):
    """:func:`torch.autocast` to ``dtype`` on ``device``'s type; nothing for float32 (or float64)."""
    if dtype in (torch.float32, torch.float64):
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def wide(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 when it is in a narrower float type; float32 and float64 as they are."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()
