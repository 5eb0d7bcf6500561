"""LRP-ready architectures, their registry, and self-describing checkpoints.

Importing this package registers ``alexnet``, ``alexnet-small`` and ``kpnet``.
"""

from . import alexnet, alexnet_small, kpnet  # noqa: F401  (registration)
from .checkpoint import LoadedModel, ModelSpec, build_model, find_model_file, load_model, save_checkpoint
from .kpnet import decode_keypoints
from .registry import MODELS, get_model, list_models, register_model

__all__ = [
    "MODELS", "register_model", "get_model", "list_models", "ModelSpec", "LoadedModel", "build_model",
    "save_checkpoint", "load_model", "find_model_file", "decode_keypoints",
]
