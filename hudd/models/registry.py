"""One registry of LRP-ready architectures: ``register_model`` / ``get_model`` / ``list_models``."""

from __future__ import annotations

from typing import Callable

import torch.nn as nn

__all__ = ["MODELS", "register_model", "get_model", "list_models"]

MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator adding a keyword-only builder to :data:`MODELS` under ``name``; duplicates are an error."""

    def decorate(builder):
        if name in MODELS:
            raise ValueError(f"model {name!r} is already registered")
        MODELS[name] = builder
        return builder

    return decorate


def list_models() -> list[str]:
    """Names of the registered architectures, sorted."""
    return sorted(MODELS)


def get_model(name: str, **kwargs) -> nn.Module:
    """Build architecture ``name`` with its keyword arguments.

    Raises
    ------
    ValueError
        ``name`` is not registered; the message lists the ones that are.
    """
    if name not in MODELS:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(list_models())}")
    return MODELS[name](**kwargs)
