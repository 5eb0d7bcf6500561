"""Every architecture a model file may name: hudd's own (:mod:`hudd.models.registry`) and torchvision's classifiers.

hudd's ``alexnet``, ``alexnet-small`` and ``kpnet`` keep their names; every other name of
``torchvision.models.list_models(module=torchvision.models)`` (``resnet18``, ``vgg16_bn``,
``convnext_tiny``, ...) is built with ``torchvision.models.get_model(name, weights=None,
num_classes=n)``, so a ``state_dict`` saved from a torchvision model loads strictly, and a
retrained model goes back to torchvision with the same call. Nothing is downloaded.
"""

from __future__ import annotations

import difflib
import warnings
from functools import cache

import torch
import torch.nn as nn

from .registry import get_model, list_models

__all__ = ["torchvision_classifiers", "architectures", "is_torchvision", "arch_kwargs", "build_architecture", "arch_choices", "unknown_arch",
           "identify_torchvision", "input_channels"]

_AUX = {"googlenet": "aux1.", "inception_v3": "AuxLogits."}  # the state_dict prefix of their auxiliary heads


@cache
def torchvision_classifiers() -> tuple[str, ...]:
    """torchvision's classification models, sorted."""
    import torchvision  # here, not at import: the light commands that read checkpoints' specs need no torchvision

    return tuple(sorted(torchvision.models.list_models(module=torchvision.models)))


def architectures() -> list[str]:
    """The names ``--arch`` takes: hudd's own, then torchvision's classifiers that hudd does not name itself."""
    own = list_models()
    return own + [name for name in torchvision_classifiers() if name not in own]


def is_torchvision(name: str) -> bool:
    """True when ``name`` is built from torchvision (not one of hudd's own architectures)."""
    return name not in list_models() and name in torchvision_classifiers()


def arch_choices(near: str = "") -> str:
    """The architectures in words: hudd's names, and torchvision's (those closest to ``near`` as examples)."""
    close = difflib.get_close_matches(near, torchvision_classifiers(), n=3, cutoff=0.5) if near else []
    return (f"hudd's {', '.join(list_models())}, or any of torchvision's {len(torchvision_classifiers())} classifiers "
            f"(torchvision.models.list_models(module=torchvision.models)), e.g. {', '.join(close or ('resnet18', 'vgg16_bn', 'efficientnet_b0'))}")


def unknown_arch(name: str) -> str:
    """What to say about an unknown architecture name."""
    return f"unknown architecture {name!r}; use {arch_choices(name)}"


def arch_kwargs(name: str, *, task: str, channels: int, n_outputs: int, height: int, state: dict | None = None) -> dict:
    """The keyword arguments that build ``name`` for this data (what a checkpoint records as ``arch_kwargs``).

    GoogLeNet and Inception v3 get their auxiliary heads only when the weights in ``state`` have them
    (a model trained here has none: they change what training sees).

    Raises
    ------
    ValueError
        A torchvision classifier asked for keypoints.
    """
    if not is_torchvision(name):
        outputs = "num_keypoints" if task == "keypoints" else "num_classes"
        return {"in_channels": channels, outputs: n_outputs, "image_size": height}
    if task != "classification":
        raise ValueError(f"torchvision's {name} is a classifier; keypoint sets take kpnet")
    kwargs = {"num_classes": n_outputs}
    if name.startswith("vit_"):
        kwargs["image_size"] = height
    if name in _AUX:
        kwargs |= {"aux_logits": any(key.startswith(_AUX[name]) for key in state or {}), "init_weights": True}
    return kwargs


def build_architecture(name: str, kwargs: dict) -> nn.Module:
    """Architecture ``name`` built with ``kwargs``, untrained.

    Raises
    ------
    ValueError
        Unknown name, or arguments the architecture refuses (the message says which).
    """
    if is_torchvision(name):
        import torchvision

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # e.g. inception_v3's note on its weight initialisation
            return torchvision.models.get_model(name, weights=None, **kwargs)
    if name not in list_models():
        raise ValueError(unknown_arch(name))
    return get_model(name, **kwargs)


def _shapes(module: nn.Module) -> dict:
    return {key: tuple(value.shape) for key, value in module.state_dict().items()}


def identify_torchvision(module: nn.Module, n_outputs: int) -> str | None:
    """The torchvision name whose ``num_classes=n_outputs`` build has ``module``'s class and state_dict, or None.

    Candidates are built on the meta device (no memory, no initialisation), so trying the handful of
    names that share a class (resnet18 ... resnet152, wide_resnet50_2) costs milliseconds.
    """
    home = type(module).__module__
    if not home.startswith("torchvision.models"):
        return None
    import torchvision

    wanted = _shapes(module)
    for name in torchvision_classifiers():
        if is_torchvision(name) and torchvision.models.get_model_builder(name).__module__ == home:
            try:
                with torch.device("meta"):
                    candidate = build_architecture(name, arch_kwargs(name, task="classification", channels=3, n_outputs=n_outputs,
                                                                     height=224, state=wanted))
            except (ValueError, TypeError, RuntimeError):
                continue
            if type(candidate) is type(module) and _shapes(candidate) == wanted:
                return name
    return None


def input_channels(weights) -> int | None:
    """Input channels of a model, from its first convolution (an ``nn.Module``, or a state_dict's first 4-D weight)."""
    if isinstance(weights, nn.Module):
        first = next((m for m in weights.modules() if isinstance(m, nn.Conv2d)), None)
        return first.in_channels if first is not None else None
    first = next((v for k, v in weights.items() if k.endswith("weight") and isinstance(v, torch.Tensor) and v.dim() == 4), None)
    return int(first.shape[1]) if first is not None else None
