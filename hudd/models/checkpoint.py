"""Self-describing checkpoints and safe model loading.

A hudd checkpoint is a plain dict saved with ``torch.save`` that loads with
``torch.load(..., weights_only=True)``::

    {"format": "hudd-checkpoint", "format_version": 1,
     "spec": {arch, arch_kwargs, task, channels, height, width, mean, std,
              classes | keypoints + keypoint_groups},
     "state_dict": {...}, "meta": {training metadata}}

Three kinds of file load:

- a hudd checkpoint (the default, safe);
- a bare ``state_dict``, with ``--arch`` naming its architecture (the rest of the spec comes
  from the case's data);
- a fully pickled ``nn.Module`` (what the original tool stored) only with ``--trust-model``,
  because unpickling runs code stored in the file.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn

from ..core.errors import HuddError
from ..core.files import atomic_path
from .registry import get_model, list_models

__all__ = ["describe_input", "ModelSpec", "LoadedModel", "save_checkpoint", "load_model", "find_model_file", "MODEL_SUFFIXES"]

FORMAT = "hudd-checkpoint"
FORMAT_VERSION = 1
MODEL_SUFFIXES = (".pt", ".pth")


def describe_input(channels: int, height: int, width: int) -> str:
    """Human form of an input shape, e.g. ``64x64 grayscale``."""
    mode = {1: "grayscale", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels}-channel")
    return f"{width}x{height} {mode}"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What a model expects and what its outputs mean.

    ``task`` is ``classification`` (outputs: one logit per name in ``classes``) or ``keypoints``
    (outputs: one heatmap per name in ``keypoints``; ``keypoint_groups`` maps a face element such
    as ``upper_lid`` to keypoint indices). Inputs are ``channels`` x ``height`` x ``width``, scaled
    to [0, 1] and normalised per channel with ``mean`` and ``std``.
    """

    arch: str
    arch_kwargs: dict
    task: str
    channels: int
    height: int
    width: int
    mean: tuple
    std: tuple
    classes: tuple = ()
    keypoints: tuple = ()
    keypoint_groups: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        for key in ("mean", "std", "classes", "keypoints"):
            data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "ModelSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        for key in ("mean", "std", "classes", "keypoints"):
            data[key] = tuple(data.get(key, ()))
        return cls(**data)

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.task == "classification" else len(self.keypoints)

    def describe_input(self) -> str:
        return describe_input(self.channels, self.height, self.width)


@dataclasses.dataclass
class LoadedModel:
    """A model ready for inference (eval mode) with its spec, source file and training metadata."""

    module: nn.Module
    spec: ModelSpec
    path: Path
    meta: dict


def build_model(spec: ModelSpec) -> nn.Module:
    """Instantiate the registered architecture of ``spec`` (untrained)."""
    return get_model(spec.arch, **spec.arch_kwargs)


def save_checkpoint(path: Path, module: nn.Module, spec: ModelSpec, meta: dict) -> None:
    """Atomically save ``module``'s weights with ``spec`` and ``meta`` as a hudd checkpoint."""
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": spec.to_dict(), "state_dict": state, "meta": dict(meta)}
    with atomic_path(Path(path)) as tmp:
        torch.save(payload, tmp)


def find_model_file(models_dir: Path, name: str | None) -> Path:
    """The model file to use: ``name`` inside ``models_dir``, or the only model file there.

    ``<stem>-hudd.pt`` files that ``hudd retrain`` wrote beside their original ``<stem>.pt`` do not
    count as a choice, so the commands after a retraining still find the analysed model.

    Raises
    ------
    HuddError
        The named file is missing, there is none, or there are several and no ``--model``.
    """
    models_dir = Path(models_dir)
    if name is not None:
        path = models_dir / name
        if not path.is_file() and not Path(name).suffix:
            candidates = [models_dir / f"{name}{s}" for s in MODEL_SUFFIXES if (models_dir / f"{name}{s}").is_file()]
            path = candidates[0] if candidates else path
        if not path.is_file():
            raise HuddError(f"{path}: no such model file; put the model in {models_dir} or pass an existing --model")
        return path
    if not models_dir.is_dir():
        raise HuddError(f"{models_dir}: folder missing; create it and put the model there (or run hudd train)")
    found = sorted(p for p in models_dir.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)
    names = {p.name for p in found}
    found = [p for p in found if not (p.stem.endswith("-hudd") and f"{p.stem[:-5]}{p.suffix}" in names)] or found
    if not found:
        raise HuddError(f"{models_dir}: no model file (*.pt, *.pth); run hudd train or copy the model there")
    if len(found) > 1:
        raise HuddError(f"{models_dir}: several models ({', '.join(p.name for p in found)}); choose one with --model NAME")
    return found[0]


def _load_payload(path: Path, trust_model: bool):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise HuddError(f"{path}: cannot read as a PyTorch model ({str(exc).splitlines()[0]}); check the file") from exc
        if not trust_model:
            raise HuddError(
                f"{path}: is a fully pickled model, and loading it runs code stored in the file; "
                "pass --trust-model only if you trust its source, or re-save it as a state_dict"
            ) from exc
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HuddError(f"{path}: cannot read as a PyTorch model ({reason}); check the file") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise HuddError(f"{path}: cannot unpickle the model ({type(exc).__name__}: {exc}); load it where its code is importable") from exc


def _build(spec: ModelSpec, path: Path) -> nn.Module:
    """The untrained architecture of ``spec``; one that cannot take this data is a HuddError naming ``path``."""
    try:
        return build_model(spec)
    except (ValueError, TypeError) as exc:  # e.g. alexnet on 32 px images, kpnet on class folders
        raise HuddError(f"{path}: architecture {spec.arch} cannot take {spec.describe_input()} {spec.task} images "
                        f"({exc}); check --arch and the data set") from None


def _check_module(module: nn.Module, spec: ModelSpec, path: Path) -> None:
    """One forward pass of a blank image: a pickled module must take the data's images and give one output
    per class (or keypoint map), else every prediction would be wrong or crash mid-step."""
    try:
        with torch.no_grad():
            outputs = module.eval()(torch.zeros(1, spec.channels, spec.height, spec.width))
    except RuntimeError as exc:
        raise HuddError(f"{path}: the model does not take the data set's {spec.describe_input()} images "
                        f"({str(exc).splitlines()[0]}); use the model made for this data") from None
    found = outputs.shape[1] if isinstance(outputs, torch.Tensor) and outputs.dim() >= 2 else None
    if found != spec.n_outputs:
        what = f"{spec.n_outputs} classes" if spec.task == "classification" else f"{spec.n_outputs} keypoints"
        raise HuddError(f"{path}: the model gives {found} outputs per image, the data set has {what}; use the model made for this data")


def _spec_problem(spec: dict) -> str:
    """What is wrong with the ``spec`` of a hudd checkpoint, or ``""``."""
    def names(key):
        value = spec.get(key, [])
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value) and len(set(value)) == len(value)

    if not isinstance(spec.get("arch"), str) or spec["arch"] not in list_models():
        return f"architecture {spec.get('arch')!r} is unknown to this hudd (known: {', '.join(list_models())})"
    if spec.get("task") not in ("classification", "keypoints") or not isinstance(spec.get("arch_kwargs", {}), dict):
        return "spec.task must be classification or keypoints and spec.arch_kwargs a table"
    sizes = [spec.get(key) for key in ("channels", "height", "width")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes):
        return f"spec channels, height, width must be positive integers, not {sizes}"
    for key in ("mean", "std"):
        value = spec.get(key)
        if not isinstance(value, (list, tuple)) or len(value) != sizes[0] or not all(isinstance(v, (int, float)) for v in value):
            return f"spec.{key} must hold one number per channel ({sizes[0]}), not {value!r}"
    if not all(v > 0 for v in spec["std"]):
        return f"spec.std must be positive, not {spec['std']!r}"
    key = "classes" if spec["task"] == "classification" else "keypoints"
    if not names(key) or not spec.get(key):
        return f"spec.{key} must be a list of distinct names, not {spec.get(key)!r}"
    return ""


def _checked_spec(payload: dict, path: Path) -> ModelSpec:
    """The :class:`ModelSpec` of a hudd checkpoint; a HuddError naming what is missing or malformed."""
    missing = [key for key in ("spec", "state_dict") if not isinstance(payload.get(key), dict)]
    problem = f"no {' and no '.join(missing)} table" if missing else _spec_problem(payload["spec"])
    if not problem and not all(isinstance(v, torch.Tensor) for v in payload["state_dict"].values()):
        problem = "state_dict holds values that are not tensors"
    if not problem and not isinstance(payload.get("meta") or {}, dict):
        problem = "meta is not a table"
    if problem:
        raise HuddError(f"{path}: a damaged hudd checkpoint ({problem}); save the model again with hudd train or torch.save")
    return ModelSpec.from_dict(payload["spec"])


def _load_state(module: nn.Module, state: dict, path: Path, arch: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        detail = str(exc).splitlines()[1].strip() if len(str(exc).splitlines()) > 1 else str(exc)
        raise HuddError(f"{path}: weights do not fit architecture {arch} for this data ({detail}); check --arch and the data set") from exc


def load_model(path: Path, *, trust_model: bool = False, arch: str | None = None, spec_from_data: Callable[[str], ModelSpec] | None = None) -> LoadedModel:
    """Load a hudd checkpoint, a bare state_dict (with ``arch``) or, if trusted, a pickled module.

    Parameters
    ----------
    path : Path
        The model file.
    trust_model : bool
        Allow unpickling a full ``nn.Module`` (runs code from the file).
    arch : str, optional
        Architecture of a bare state_dict.
    spec_from_data : callable, optional
        ``spec_from_data(arch)`` builds a :class:`ModelSpec` from the case's data, for files that do not
        carry one (bare state_dicts and pickled modules).
    """
    path = Path(path)
    payload = _load_payload(path, trust_model)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        spec = _checked_spec(payload, path)
        module = _build(spec, path)
        _load_state(module, payload["state_dict"], path, spec.arch)
        _check_module(module, spec, path)
        meta = dict(payload.get("meta") or {})
    elif isinstance(payload, nn.Module):
        if spec_from_data is None:
            raise HuddError(f"{path}: a pickled model carries no input spec; run the command on a case folder")
        module = payload
        spec = spec_from_data(type(module).__name__)
        _check_module(module, spec, path)
        meta = {"source": "pickled module"}
    elif isinstance(payload, dict) and payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
        if arch is None:
            raise HuddError(f"{path}: is a bare state_dict; name its architecture with --arch (one of {', '.join(list_models())})")
        if arch not in list_models():
            raise HuddError(f"--arch {arch}: unknown architecture; known: {', '.join(list_models())}")
        if spec_from_data is None:
            raise HuddError(f"{path}: a bare state_dict carries no input spec; run the command on a case folder")
        spec = spec_from_data(arch)
        module = _build(spec, path)
        _load_state(module, payload, path, arch)
        meta = {"source": "state_dict"}
    else:
        raise HuddError(f"{path}: not a hudd checkpoint, state_dict or model; re-save the model with torch.save")
    module.eval()
    return LoadedModel(module=module, spec=spec, path=path, meta=meta)
