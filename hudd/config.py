"""One frozen :class:`Config`: defaults < ``<case>/hudd.toml`` < command-line flags.

Every value is checked once, here, in the style ``hudd.toml: sf == 1.5, must be <= 1``, naming
the key and where the value came from. ``hudd config CASE`` prints the effective values.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .core.errors import HuddError

__all__ = ["Config", "CONFIG_KEYS", "flag_of", "key_info", "load_config", "effective_config", "CONFIG_FILE", "IMAGENET_MEAN",
           "IMAGENET_STD", "parse_normalize"]

CONFIG_FILE = "hudd.toml"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def parse_normalize(text: str) -> tuple[tuple, tuple] | None:
    """The per-channel ``(mean, std)`` a ``normalize`` value names, or None for ``auto`` (the model file's, or the default).

    ``imagenet``: ImageNet's; ``none``: pixels in [0, 1] as they are (empty tuples: one 0/1 per channel);
    ``M1,M2,M3/S1,S2,S3``: the numbers given (one mean and one std: the same for every channel).

    Raises
    ------
    ValueError
        The text is none of these; the message says what is expected.
    """
    word = text.strip().lower()
    if word == "auto":
        return None
    if word == "imagenet":
        return IMAGENET_MEAN, IMAGENET_STD
    if word == "none":
        return (), ()
    means, slash, stds = word.partition("/")
    try:
        mean, std = tuple(float(v) for v in means.split(",")), tuple(float(v) for v in stds.split(","))
    except ValueError:
        mean = std = ()
    if not slash or not mean or len(mean) != len(std) or not all(math.isfinite(v) for v in mean + std):
        raise ValueError("must be auto, imagenet, none or M1,M2,M3/S1,S2,S3 (one mean and one std per channel)")
    if not all(v > 0 for v in std):
        raise ValueError("must have positive stds")
    return mean, std


def _normalize_problem(value: str) -> str:
    try:
        parse_normalize(value)
    except ValueError as exc:
        return str(exc)
    return ""


def _channels_problem(value: int) -> str:
    return "" if value in (0, 1, 3) else "must be 0 (auto), 1 (grayscale) or 3 (RGB)"


def flag_of(key: str) -> str:
    """The command-line flag of a config key: ``batch_size`` -> ``--batch-size`` (hudd.toml and flags share names)."""
    return "--" + key.replace("_", "-")


def _key(default, *, lo=None, hi=None, choices=None, check=None, doc=""):
    """A config key: its default, range, choices, ``check`` (value -> what is wrong with it, or "") and doc."""
    return dataclasses.field(default=default, metadata={"lo": lo, "hi": hi, "choices": choices, "check": check, "doc": doc})


@dataclasses.dataclass(frozen=True)
class Config:
    """Effective settings of one run. Values are stored as given; :func:`load_config` checks them."""

    device: str = _key("auto", doc="the device: auto, cpu or cuda[:i]")
    batch_size: int = _key(64, lo=1, doc="images per batch on the device; bounds memory")
    seed: int = _key(0, lo=0, doc="one seed for every random choice")
    epochs: int = _key(12, lo=1, doc="maximum epochs when training a baseline model")
    lr: float = _key(2e-3, lo=0.0, doc="peak learning rate (Adam, one-cycle schedule) when training a baseline model")
    patience: int = _key(4, lo=1, doc="epochs without validation gain before early stopping")
    val_fraction: float = _key(0.1, lo=0.0, hi=0.5, doc="share of TrainingSet held out for validation")
    retrain_epochs: int = _key(60, lo=1, doc="retrain: passes, each as many balanced selected images as were labelled "
                                               "(paired), or epochs over TrainingSet + them (union)")
    retrain_lr: float = _key(1e-3, lo=0.0, doc="SGD learning rate in retrain")
    retrain_mix: str = _key("paired", choices=("paired", "union"),
                            doc="retrain: each pass the selected images + as many fresh random TrainingSet images (paired: half "
                                "of every batch), or each epoch the whole TrainingSet + the selected images (union, the paper's)")
    momentum: float = _key(0.9, lo=0.0, hi=1.0, doc="SGD momentum in retrain")
    weight_decay: float = _key(5e-4, lo=0.0, doc="SGD weight decay in retrain")
    runs: int = _key(1, lo=1, doc="retrain: repetitions of every method with seeds seed, seed+1, ... (the paper used 10)")
    baselines: bool = _key(True, doc="retrain: also train the paper's baselines B1 and B2 on the same budget")
    ddp: bool = _key(False, doc="retrain under torchrun: train each run over every process with DistributedDataParallel (each "
                                "process a share of every epoch's batches) instead of one run per process")
    lrp_rule: str = _key("hudd", choices=("hudd", "epsilon-plus-flat"), doc="LRP composite")
    lrp_target: str = _key("predicted", choices=("predicted", "true"), doc="class whose logit seeds relevance")
    layers: tuple = _key((), doc="layers to analyse, comma-separated (empty, or 'all' as a flag: every internal layer)")
    precision: str = _key("float32", choices=("float32", "bfloat16", "float16"),
                          doc="arithmetic of the heavy loops (LRP heatmaps, feature extraction, training): float32, or "
                              "bfloat16/float16 mixed precision (float16: CUDA only); results are stored in float32")
    heatmap_dtype: str = _key("float32", choices=("float32", "float16"), doc="storage type of Heatmaps/<layer>.npy")
    k_min: int = _key(2, lo=2, doc="smallest number of clusters tried")
    k_max: int = _key(500, lo=2, doc="largest number of clusters tried (also capped at errors/2)")
    export: str = _key("selected", choices=("selected", "all"), doc="export the clusters of the selected layer, or of every layer")
    extractor: str = _key("auto", doc="feature methods: 'model' (its penultimate layer), 'margins' (its logit margins), "
                                      "'efficientnet_lite0[:block]', or a torchvision backbone name with weights; join several "
                                      "with +; auto: the method's")
    weights: str = _key("", doc="feature methods: state_dict file of the extractor's torchvision backbone (nothing is downloaded)")
    clusterer: str = _key("auto", choices=("auto", "dbscan", "hdbscan", "ward"),
                          doc="feature methods: auto: the method's (dbscan for blackbox, ward otherwise)")
    reducer: str = _key("auto", choices=("auto", "umap", "pca"),
                        doc="density clusterers: auto = UMAP when umap-learn is installed (hudd[umap]), else PCA")
    select_in: str = _key("auto", choices=("auto", "heatmaps", "features"),
                          doc="assign: the space improvement images are compared with the clusters in: the model's LRP heatmaps "
                              "at the paper's selected layer, the space the method clustered in, or the method's own choice")
    sf: float = _key(0.3, lo=0.0, hi=1.0, doc="selection factor of the unsafe-set quota")
    error_px: float = _key(4.0, lo=0.0, doc="keypoint models: mean error (pixels) above which an image is an error")
    workspace: str = _key("HUDD", doc="workspace folder (in hudd.toml relative to the case folder, as a flag to the current folder)")
    treatment: str = _key("none", choices=("none", "doctor"),
                          doc="retrain: also fine-tune with Model Doctor's constraints (methods doctor and hudd+doctor)")
    doctor_layers: tuple = _key((), doc="Model Doctor: convolutional layers to diagnose and constrain (empty: the last two)")
    doctor_per_class: int = _key(100, lo=1, doc="Model Doctor: most confident, correct training images per class in the "
                                                 "aggregates (T)")
    doctor_draws: int = _key(10, lo=1, doc="Model Doctor: noise draws per image in the diagnosis (J, equation 4)")
    doctor_draws_train: int = _key(10, lo=1, doc="Model Doctor: noise draws per image in the treatment (equation 5, averaged: "
                                                 "fewer is cheaper, with the same expected loss; 1-2 on a CPU)")
    doctor_delta: float = _key(0.1, lo=0.0, doc="Model Doctor: feature-map noise is uniform in [-delta, delta]")
    doctor_v: float = _key(0.5, lo=0.0, hi=1.0, doc="Model Doctor: a channel is unrelated to a class when its aggregate is below "
                                                    "v times the class's largest")
    doctor_lambda: float = _key(1.0, lo=0.0, doc="Model Doctor: weight of the constraints against the cross-entropy")
    doctor_spatial: str = _key("auto", choices=("auto", "on", "off"),
                               doc="Model Doctor: space-wise constraint from DataSets/<Set>/masks/ (auto: when the TrainingSet has masks)")
    channels: int = _key(0, lo=0, check=_channels_problem,
                         doc="input channels of the model: 1 (grayscale) or 3 (RGB), images of other modes converted as torchvision's "
                             "ImageFolder does; 0: the model file's, else 3 for torchvision architectures, else the TrainingSet's")
    image_size: int = _key(0, lo=0, doc="side in px of the model's square input; 0: the model file's, else the TrainingSet's "
                                        "first image's size")
    normalize: str = _key("auto", check=_normalize_problem,
                          doc="mean/std the model's inputs are normalised with, after scaling pixels to [0, 1]: imagenet, none, "
                              "M1,M2,M3/S1,S2,S3, or auto: the model file's, else ImageNet's for torchvision architectures, else "
                              "none (hudd train: the TrainingSet's own)")
    resize: str = _key("auto", choices=("auto", "none", "stretch", "crop"),
                       doc="images not of the model's input size: none (an error), stretch (resized to it), crop (shorter side "
                           "resized to it, then the centre cut out: torchvision's Resize + CenterCrop); auto: the model file's, "
                           "else none")
    allow_weak_model: bool = _key(False, doc="analyse a model that is right on the TrainingSet hardly more often than chance "
                                             "(usually a sign of the wrong input convention)")
    sources: Mapping = dataclasses.field(default_factory=dict, compare=False, repr=False)  # key -> where its value came from

    def base(self, key: str, case_root: Path) -> Path:
        """What the path in ``key`` is relative to: the current folder when it came from the command line,
        the case folder when it came from ``hudd.toml`` (or is the default)."""
        return Path.cwd() if self.sources.get(key) == "command line" else Path(case_root)

    def path(self, key: str, case_root: Path) -> Path | None:
        """The path in ``key`` (see :meth:`base`), ``None`` when empty."""
        value = getattr(self, key)
        return self.base(key, case_root) / value if value else None

    def where(self, key: str) -> str:
        """How to name ``key`` in a message: the flag (``--batch-size``) or the toml key (``<case>/hudd.toml: batch_size``)."""
        source = self.sources.get(key, "command line")
        if source == "command line":
            return flag_of(key)
        return key if source == "default" else f"{source}: {key}"


_FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.name != "sources"}
CONFIG_KEYS = tuple(_FIELDS)


def key_info(name: str) -> tuple[Any, Mapping]:
    """The default of config key ``name`` and its metadata (lo, hi, choices, doc): what its flag is made from."""
    return _FIELDS[name].default, _FIELDS[name].metadata


def _check(name: str, value: Any, source: str) -> Any:
    """Coerce ``value`` to the type of key ``name`` and check its range; raise HuddError naming ``source``."""
    field = _FIELDS[name]
    default = field.default
    meta = field.metadata
    where = f"{flag_of(name)} == {value!r}" if source == "command line" else f"{source}: {name} == {value!r}"
    if isinstance(default, bool) or isinstance(value, bool):
        if not (isinstance(default, bool) and isinstance(value, bool)):
            raise HuddError(f"{where}, must be a {type(default).__name__}")
    elif isinstance(default, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise HuddError(f"{where}, must be an integer")
    elif isinstance(default, float):
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise HuddError(f"{where}, must be a finite number")
        value = float(value)
    elif isinstance(default, tuple):
        if isinstance(value, str):
            value = tuple(v.strip() for v in value.split(",") if v.strip())
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise HuddError(f"{where}, must be a list of layer names")
        value = tuple(value)
    elif not isinstance(value, str):
        raise HuddError(f"{where}, must be a string")
    if meta["lo"] is not None and value < meta["lo"]:
        raise HuddError(f"{where}, must be >= {meta['lo']}")
    if meta["hi"] is not None and value > meta["hi"]:
        raise HuddError(f"{where}, must be <= {meta['hi']}")
    if meta["choices"] is not None and value not in meta["choices"]:
        raise HuddError(f"{where}, must be one of {', '.join(meta['choices'])}")
    problem = meta["check"](value) if meta["check"] is not None else ""
    if problem:
        raise HuddError(f"{where}, {problem}")
    return value


def _read_toml(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise HuddError(f"{path}: not valid TOML ({exc}); fix the file or delete it") from exc
    except UnicodeDecodeError:
        raise HuddError(f"{path}: not UTF-8 text; save it as UTF-8") from None
    except OSError as exc:
        raise HuddError(f"{path}: cannot read ({exc.strerror})") from exc
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise HuddError(f"{path}: unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(_FIELDS)}")
    return data


def effective_config(case: Path | None, overrides: Mapping[str, Any] | None = None) -> list[tuple[str, Any, str]]:
    """Return ``(key, value, source)`` for every key; source is ``default``, the toml path or ``command line``."""
    layered = {name: (f.default, "default") for name, f in _FIELDS.items()}
    if case is not None:
        toml_path = Path(case) / CONFIG_FILE
        if toml_path.is_file():
            for name, value in _read_toml(toml_path).items():
                layered[name] = (_check(name, value, str(toml_path)), str(toml_path))
    for name, value in (overrides or {}).items():
        if name not in _FIELDS:
            raise ValueError(f"unknown config key {name!r}")
        if value is not None:
            layered[name] = (_check(name, value, "command line"), "command line")
    if layered["k_max"][0] < layered["k_min"][0]:
        raise HuddError(f"{layered['k_max'][1]}: k_max == {layered['k_max'][0]}, must be >= k_min == {layered['k_min'][0]}")
    return [(name, value, source) for name, (value, source) in layered.items()]


def load_config(case: Path | None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the effective :class:`Config` of ``case``; ``None`` overrides are ignored (flag not given)."""
    layered = effective_config(case, overrides)
    return Config(**{name: value for name, value, _ in layered}, sources={name: source for name, _, source in layered})
