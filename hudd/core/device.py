"""Choose the compute device once (``--device auto|cpu|cuda``)."""

import torch

from .errors import HuddError

__all__ = ["resolve_device"]


def resolve_device(name: str, where: str = "--device") -> torch.device:
    """Return the torch device for ``auto`` (CUDA when available, else CPU), ``cpu`` or ``cuda[:i]``.

    Raises
    ------
    HuddError
        ``cuda`` was asked for on a machine without a usable CUDA device; the message names ``where``
        the value was given (the flag, or the hudd.toml key).
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise HuddError(f"{where} {name}: no CUDA device is available here; use --device cpu or --device auto")
        return torch.device(name)
    raise HuddError(f"{where} {name}: unknown device; use auto, cpu or cuda")
