"""Self-describing checkpoints and safe model loading.

A hudd checkpoint is a plain dict saved with ``torch.save`` that loads with
``torch.load(..., weights_only=True)``::

    {"format": "hudd-checkpoint", "format_version": 1,
     "spec": {arch, arch_kwargs, task, channels, height, width, mean, std, resize,
              classes | keypoints + keypoint_groups},
     "state_dict": {...}, "meta": {training metadata}}

``arch`` is one of :func:`hudd.models.architectures.architectures` (hudd's own or a torchvision
classifier), so ``get_model(spec["arch"], **spec["arch_kwargs"])`` rebuilds it. A model whose
class no name rebuilds (a pickled ``nn.Sequential``, say) is kept pickled under ``"module"`` beside
its spec; such a file loads only with ``--trust-model``, as the file it came from. Checkpoints
written before ``resize`` existed load with ``resize = "none"``.

Four kinds of file load:

- a hudd checkpoint (the default, safe);
- a bare ``state_dict``, with ``--arch`` naming its architecture (the rest of the spec comes
  from the settings and the case's data);
- a training checkpoint, a dict holding the state_dict under ``state_dict``, ``model_state_dict``,
  ``model`` or ``net`` beside ``epoch``, ``optimizer_state_dict`` and the like (``module.`` prefixes,
  as DataParallel saves them, are removed), also with ``--arch``;
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
from .architectures import arch_choices, architectures, build_architecture, unknown_arch

__all__ = ["describe_input", "ModelSpec", "LoadedModel", "save_checkpoint", "load_model", "find_model_file", "check_module", "MODEL_SUFFIXES",
           "STATE_KEYS", "RESIZE_POLICIES", "weights_in"]

FORMAT = "hudd-checkpoint"
FORMAT_VERSION = 1
MODEL_SUFFIXES = (".pt", ".pth")
STATE_KEYS = ("state_dict", "model_state_dict", "model", "net")
RESIZE_POLICIES = ("none", "stretch", "crop")
_PREFIXES = ("module.", "_orig_mod.")  # DataParallel's and torch.compile's


def describe_input(channels: int, height: int, width: int) -> str:
    """Human form of an input shape, e.g. ``64x64 grayscale``."""
    mode = {1: "grayscale", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels}-channel")
    return f"{width}x{height} {mode}"


def _numbers(values) -> str:
    return "[" + ", ".join(f"{v:g}" for v in values) + "]"


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
    resize: str = "none"

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

    def convention(self) -> str:
        """The input convention in words: size and mode, mean and std, resize policy."""
        return f"{self.describe_input()}, mean {_numbers(self.mean)}, std {_numbers(self.std)}, resize {self.resize}"


@dataclasses.dataclass
class LoadedModel:
    """A model ready for inference (eval mode) with its spec, source file and training metadata.

    ``origin`` says what the file was (a hudd checkpoint, a state_dict, ...); ``assumed`` names the
    parts of the input convention that were neither in the file nor set by the user, ``replaced`` the
    settings that replaced what the file records ("" when none)."""

    module: nn.Module
    spec: ModelSpec
    path: Path
    meta: dict
    origin: str = "hudd checkpoint"
    assumed: str = ""
    replaced: str = ""

    @property
    def pickled(self) -> bool:
        """True when no architecture name rebuilds the model: its files keep it pickled (``--trust-model``)."""
        return self.spec.arch not in architectures()

    def describe(self) -> str:
        """One line: the file, what it is, its architecture and classes, the input convention."""
        outputs = f"{len(self.spec.classes)} classes" if self.spec.task == "classification" else f"{len(self.spec.keypoints)} keypoints"
        line = f"model {self.path.name}: {self.spec.arch} ({self.origin}), {outputs}; input {self.spec.convention()}"
        if self.replaced:
            line += f" ({self.replaced} in place of what the file records)"
        if self.assumed:
            line += (f" ({self.assumed}; set --normalize, --channels, --image-size, --resize or those hudd.toml keys if it was "
                     "trained otherwise)")
        return line


def build_model(spec: ModelSpec) -> nn.Module:
    """Instantiate the architecture of ``spec`` (untrained)."""
    return build_architecture(spec.arch, spec.arch_kwargs)


def save_checkpoint(path: Path, module: nn.Module, spec: ModelSpec, meta: dict) -> None:
    """Atomically save ``module``'s weights with ``spec`` and ``meta`` as a hudd checkpoint.

    A module no architecture name rebuilds is saved pickled under ``"module"`` as well (its state_dict
    shares its storage, so the weights are stored once)."""
    pickled = spec.arch not in architectures()
    if pickled:
        module = module.cpu()
    state = {k: (v.detach() if pickled else v.detach().cpu().clone()) for k, v in module.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "spec": spec.to_dict(), "state_dict": state, "meta": dict(meta)}
    if pickled:
        payload["module"] = module
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
    stems = {p.stem for p in found}
    found = [p for p in found if not (p.stem.endswith("-hudd") and p.stem[:-5] in stems)] or found
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


def check_module(module: nn.Module, spec: ModelSpec, path: Path, advice: str = "use the model made for this data") -> None:
    """One forward pass of a blank image: a model must take the data's images and give one output per class
    (or keypoint map), else every prediction would be wrong or crash mid-step. ``advice``: what the error says to do."""
    try:
        with torch.no_grad():
            outputs = module.eval()(torch.zeros(1, spec.channels, spec.height, spec.width))
    except (RuntimeError, ValueError) as exc:
        raise HuddError(f"{path}: the model does not take the data set's {spec.describe_input()} images "
                        f"({str(exc).splitlines()[0]}); {advice}") from None
    found = outputs.shape[1] if isinstance(outputs, torch.Tensor) and outputs.dim() >= 2 else None
    if found != spec.n_outputs:
        what = f"{spec.n_outputs} classes" if spec.task == "classification" else f"{spec.n_outputs} keypoints"
        raise HuddError(f"{path}: the model gives {found} outputs per image, the data set has {what}; use the model made for this data")


def _spec_problem(spec: dict, pickled: bool) -> str:
    """What is wrong with the ``spec`` of a hudd checkpoint, or ``""`` (``pickled``: the module is in the file, any arch name)."""
    def names(key):
        value = spec.get(key, [])
        return isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value) and len(set(value)) == len(value)

    if not isinstance(spec.get("arch"), str) or not (pickled or spec["arch"] in architectures()):
        return f"architecture {spec.get('arch')!r} is unknown to this hudd ({unknown_arch(str(spec.get('arch')))})"
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
    if spec.get("resize", "none") not in RESIZE_POLICIES:
        return f"spec.resize must be one of {', '.join(RESIZE_POLICIES)}, not {spec.get('resize')!r}"
    key = "classes" if spec["task"] == "classification" else "keypoints"
    if not names(key) or not spec.get(key):
        return f"spec.{key} must be a list of distinct names, not {spec.get(key)!r}"
    return ""


def _checked_spec(payload: dict, path: Path, pickled: bool) -> ModelSpec:
    """The :class:`ModelSpec` of a hudd checkpoint; a HuddError naming what is missing or malformed."""
    missing = [key for key in ("spec", "state_dict") if not isinstance(payload.get(key), dict)]
    problem = f"no {' and no '.join(missing)} table" if missing else _spec_problem(payload["spec"], pickled)
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


def _is_state(value) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(v, torch.Tensor) for v in value.values())


def _unwrapped(value):
    """A state_dict without the prefix every key has (``module.``, ``_orig_mod.``); a module out of its DataParallel."""
    if isinstance(value, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
        return value.module
    if isinstance(value, dict):
        for prefix in _PREFIXES:
            if all(isinstance(k, str) and k.startswith(prefix) for k in value):
                value = {k[len(prefix):]: v for k, v in value.items()}
    return value


def weights_in(payload, path: Path) -> tuple[object, str]:
    """The model in a file that is not a hudd checkpoint: ``(state_dict or module, what the file is)``; a training
    checkpoint's weights are found under any of ``STATE_KEYS``, prefixes of DataParallel and torch.compile dropped."""
    if isinstance(payload, nn.Module):
        return _unwrapped(payload), "pickled model"
    if _is_state(payload):
        return _unwrapped(payload), "state_dict"
    if isinstance(payload, dict):
        for key in STATE_KEYS:
            value = payload.get(key)
            if _is_state(value) or isinstance(value, nn.Module):
                return _unwrapped(value), f"{key!r} of a training checkpoint"
        keys = [str(k) for k in payload]
        shown = ", ".join(keys[:12]) + (f" and {len(keys) - 12} more" if len(keys) > 12 else "")
        raise HuddError(f"{path}: a dict with keys {shown or 'none'}, none of which holds the model's weights (hudd looks for "
                        f"{', '.join(STATE_KEYS)}); save the weights with torch.save(model.state_dict(), FILE)")
    raise HuddError(f"{path}: holds a {type(payload).__name__}, not a hudd checkpoint, state_dict or model; "
                    "save the weights with torch.save(model.state_dict(), FILE)")


SpecFor = Callable[[str, "ModelSpec | None", object], ModelSpec]
"""``spec_for(arch, file_spec, weights) -> ModelSpec``: the spec to use for a model file. ``arch``: the architecture
(the checkpoint's, ``--arch``, or a pickled module's class name); ``file_spec``: the checkpoint's spec, None when the
file has none; ``weights``: its state_dict or module."""


def load_model(path: Path, *, trust_model: bool = False, arch: str | None = None, spec_for: SpecFor | None = None) -> LoadedModel:
    """Load a hudd checkpoint, a state_dict or training checkpoint (with ``arch``) or, if trusted, a pickled module.

    Parameters
    ----------
    path : Path
        The model file.
    trust_model : bool
        Allow unpickling a full ``nn.Module`` (runs code from the file).
    arch : str, optional
        Architecture of a state_dict; also accepted (and checked) for a hudd checkpoint.
    spec_for : callable, optional
        Decides the spec (see :data:`SpecFor`): the case's settings and data fill in what the file does not
        carry and override what the user set. Without it, a hudd checkpoint's own spec is used and other
        files are an error.
    """
    path = Path(path)
    payload = _load_payload(path, trust_model)
    if isinstance(payload, dict) and payload.get("format") == FORMAT:
        pickled = isinstance(payload.get("module"), nn.Module)
        file_spec = _checked_spec(payload, path, pickled)
        if arch is not None and arch != file_spec.arch:
            raise HuddError(f"--arch {arch}: {path.name} is a hudd checkpoint of a {file_spec.arch}; leave --arch out")
        weights = payload["module"] if pickled else payload["state_dict"]
        spec = spec_for(file_spec.arch, file_spec, weights) if spec_for is not None else file_spec
        origin, meta = "hudd checkpoint", dict(payload.get("meta") or {})
    else:
        weights, origin = weights_in(payload, path)
        if isinstance(weights, nn.Module):
            arch = arch or type(weights).__name__
        elif arch is None:
            raise HuddError(f"{path}: is a {origin}; name its architecture with --arch: {arch_choices()}")
        elif arch not in architectures():
            raise HuddError(f"--arch {arch}: {unknown_arch(arch)}")
        if spec_for is None:
            raise HuddError(f"{path}: a {origin} carries no input spec; run the command on a case folder")
        spec = spec_for(arch, None, weights)
        meta = {"source": origin}
    if isinstance(weights, nn.Module):
        module = weights
    else:
        module = _build(spec, path)
        _load_state(module, weights, path, spec.arch)
    check_module(module, spec, path)
    module.eval()
    return LoadedModel(module=module, spec=spec, path=path, meta=meta, origin=origin)
