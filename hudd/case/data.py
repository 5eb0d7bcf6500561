"""Case folders and data sets: one loader for every step.

A case folder holds ``DataSets/`` and ``DNNModels/``. Each set (``TrainingSet``, ``TestSet``,
``ImprovementSet``) is laid out either for classification, as image folders::

    DataSets/<Set>/<class>/*.png|jpg      class order = sorted folder names

or for keypoint regression::

    DataSets/<Set>/images/*.png
    DataSets/<Set>/keypoints.csv          image, x0, y0, x1, y1, ...  (image relative to the set folder,
                                          or a bare file name inside images/)

An optional ``DataSets/<Set>/params.csv`` (image + simulator parameters + ``cause``) is read only
by evaluation and reports, never by the model. Optional foreground masks (Model Doctor's space-wise
constraint) mirror the images under ``DataSets/<Set>/masks/``: the mask of ``<Set>/<class>/0042.png``
is ``<Set>/masks/<class>/0042.png`` (of ``<Set>/images/0042.png``, ``<Set>/masks/images/0042.png``), an
8-bit grayscale PNG of the image's size, 255 (above 127) on the object and 0 elsewhere; ``masks/`` is
never listed as a class or as images. Everywhere, an image is identified by its path
relative to ``DataSets/`` (``TestSet/TopLeft/000123.png``). Images are converted to the model's
mode and, when its input convention says so, resized (:mod:`hudd.case.images`); pixels are scaled to
[0, 1] and normalised with the model spec's per-channel mean and std.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from ..core.errors import HuddError
from .images import check_images, image_header, model_image, read_image, resized
from .layout import DATASETS, require_datasets, require_dir
from ..workspace.readers import read_table
from ..models.checkpoint import ModelSpec, describe_input

__all__ = [
    "IMAGE_SUFFIXES", "SPLITS", "Case", "SplitListing", "list_split", "detect_task", "read_image", "ImageDataset",
    "make_loader", "read_params", "keypoint_groups", "MASKS_FOLDER", "mask_path", "read_mask", "read_masks", "has_masks",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SPLITS = ("TrainingSet", "TestSet", "ImprovementSet")
_SET_FILES = {"params.csv", "keypoints.csv", "labels.csv"}
MASKS_FOLDER = "masks"
_CACHE_LIMIT_BYTES = 2 << 30


@dataclass(frozen=True)
class Case:
    """A case folder: ``DataSets/`` with the image sets and ``DNNModels/`` with the models."""

    root: Path

    @property
    def datasets(self) -> Path:
        return Path(self.root) / DATASETS

    @property
    def models(self) -> Path:
        return Path(self.root) / "DNNModels"

    def split_dir(self, split: str) -> Path:
        return self.datasets / split


@dataclass(frozen=True)
class SplitListing:
    """The images of one set.

    ``ids`` are paths relative to ``DataSets/``; ``targets`` are class indices ``(n,)`` int64 for
    classification or keypoint coordinates ``(n, K, 2)`` float32 (x, y in pixels) for keypoints.
    """

    split: str
    task: str
    ids: tuple
    targets: np.ndarray
    classes: tuple = ()
    keypoints: tuple = ()
    labelled: bool = True

    def __len__(self) -> int:
        return len(self.ids)


def detect_task(case: Case, split: str = "TrainingSet") -> str:
    """``keypoints`` when ``<Set>/keypoints.csv`` exists, else ``classification``."""
    set_dir = case.split_dir(split)
    require_dir(set_dir, f"create it with the {split} images (see DataSets/README.md)")
    return "keypoints" if (set_dir / "keypoints.csv").is_file() else "classification"


def _list_unlabelled(case: Case, split: str, folder: Path, classes: tuple, keypoints: tuple, task: str) -> SplitListing:
    """Images directly in ``folder`` with unknown targets (-1 for classes, NaN for keypoints)."""
    files = _named_files(sorted(p for p in folder.iterdir() if p.is_file() and p.name not in _SET_FILES and not p.name.startswith(".")))
    for path in files:
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise HuddError(f"{path}: not an image (expected {', '.join(IMAGE_SUFFIXES)}); move it out of the data set")
    if not files:
        raise HuddError(f"{folder}: no images; add the {split} images")
    ids = tuple(str(p.relative_to(case.datasets)) for p in files)
    targets = np.full(len(ids), -1, np.int64) if task == "classification" else np.full((len(ids), len(keypoints), 2), np.nan, np.float32)
    return SplitListing(split, task, ids, targets, classes=classes, keypoints=keypoints, labelled=False)


def _list_classification(case: Case, split: str, classes: tuple | None, model_name: str, unlabelled_ok: bool = False) -> SplitListing:
    set_dir = case.split_dir(split)
    folders = _named_files(sorted(p for p in set_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name != MASKS_FOLDER))
    stray = sorted(p for p in set_dir.iterdir() if p.is_file() and p.name not in _SET_FILES and not p.name.startswith("."))
    if unlabelled_ok and stray and not folders and classes is not None:
        return _list_unlabelled(case, split, set_dir, classes, (), "classification")
    if stray:
        raise HuddError(f"{stray[0]}: file outside a class folder; classification sets hold one folder per class")
    if not folders:
        raise HuddError(f"{set_dir}: no class folders; put images in {set_dir}/<class>/ (one folder per class)")
    names = tuple(p.name for p in folders)
    if classes is None:
        classes = names
    unknown = [n for n in names if n not in classes]
    if unknown:
        raise HuddError(f"{set_dir / unknown[0]}: class {unknown[0]!r} is unknown to {model_name} (classes: {', '.join(classes)}); rename or remove the folder")
    ids, targets = [], []
    for folder in folders:
        files = _named_files(sorted(p for p in folder.iterdir() if not p.name.startswith(".")))
        for path in files:
            if path.is_dir() or path.suffix.lower() not in IMAGE_SUFFIXES:
                raise HuddError(f"{path}: not an image (expected {', '.join(IMAGE_SUFFIXES)}); move it out of the data set")
        if not files:
            raise HuddError(f"{folder}: class folder has no images; add images or remove the folder")
        ids.extend(f"{split}/{folder.name}/{p.name}" for p in files)
        targets.extend([classes.index(folder.name)] * len(files))
    return SplitListing(split, "classification", tuple(ids), np.asarray(targets, dtype=np.int64), classes=tuple(classes))


def _keypoint_name(x_column: str) -> str:
    """``x3`` -> ``kp3``; ``upper_lid_2_x`` -> ``upper_lid_2``; anything else is kept."""
    x_column = str(x_column)
    if re.fullmatch(r"x\d+", x_column):
        return f"kp{x_column[1:]}"
    return x_column[:-2] if x_column.endswith("_x") else x_column


def keypoint_groups(names: tuple) -> dict[str, list[int]]:
    """Group keypoints by name without its trailing index (``upper_lid_2`` -> ``upper_lid``)."""
    groups: dict[str, list[int]] = {}
    for index, name in enumerate(names):
        groups.setdefault(re.sub(r"_?\d+$", "", name) or name, []).append(index)
    return groups


def _list_keypoints(case: Case, split: str, keypoints: tuple | None) -> SplitListing:
    set_dir = case.split_dir(split)
    csv = set_dir / "keypoints.csv"
    images_dir = set_dir / "images"
    if not csv.is_file():
        raise HuddError(f"{csv}: missing; keypoint sets need keypoints.csv (image, x0, y0, x1, y1, ...)")
    require_dir(images_dir, "keypoint sets keep their images in <Set>/images/")
    try:
        table = pd.read_csv(csv)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise HuddError(f"{csv}: cannot parse ({exc}); it must be a CSV with columns image, x0, y0, x1, y1, ...") from exc
    coords = [c for c in table.columns if c != "image"]
    if "image" not in table.columns or not coords or len(coords) % 2:
        raise HuddError(f"{csv}: expected columns image, x0, y0, x1, y1, ... (pairs of coordinates); found {', '.join(map(str, table.columns))}")
    values = table[coords].apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)
    bad_rows = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if len(bad_rows):
        raise HuddError(f"{csv}: row {bad_rows[0] + 2} ({table['image'].iloc[bad_rows[0]]}) has a missing or non-numeric coordinate; fix it")
    names = [str(n) if str(n).startswith("images/") else f"images/{n}" for n in table["image"]]
    on_disk = {f"images/{p.name}" for p in _named_files(sorted(images_dir.iterdir())) if p.is_file() and not p.name.startswith(".")}
    for name in on_disk:
        if Path(name).suffix.lower() not in IMAGE_SUFFIXES:
            raise HuddError(f"{set_dir / name}: not an image (expected {', '.join(IMAGE_SUFFIXES)}); move it out of the data set")
    missing = sorted(set(names) - on_disk)
    if missing:
        raise HuddError(f"{csv}: lists {missing[0]}, which is not in {images_dir}; remove the row or add the image")
    unlabelled = sorted(on_disk - set(names))
    if unlabelled:
        raise HuddError(f"{set_dir / unlabelled[0]}: image has no row in {csv}; add its keypoints or remove it")
    if not names:
        raise HuddError(f"{csv}: no images listed; add rows (image, x0, y0, ...)")
    n_kp = len(coords) // 2
    found_names = tuple(_keypoint_name(coords[2 * k]) for k in range(n_kp))
    if keypoints is not None and len(keypoints) != n_kp:
        raise HuddError(f"{csv}: has {n_kp} keypoints, the model predicts {len(keypoints)}; use the model made for this data")
    order = np.argsort(names, kind="stable")
    return SplitListing(
        split, "keypoints", tuple(f"{split}/{names[i]}" for i in order), values[order].reshape(len(names), n_kp, 2),
        keypoints=tuple(keypoints) if keypoints is not None else found_names,
    )


def list_split(case: Case, split: str, *, spec: ModelSpec | None = None, task: str | None = None, model_name: str = "the model",
               unlabelled_ok: bool = False) -> SplitListing:
    """List the images and targets of ``split``, checked against ``spec`` (of ``model_name``) when given.

    With ``unlabelled_ok`` (the ImprovementSet) and a spec, a set of bare images (directly in the
    set folder for classification, in ``images/`` without ``keypoints.csv`` for keypoints) is
    listed with unknown targets and ``labelled=False``.

    Raises
    ------
    HuddError
        Missing set folder, empty class folder, non-image file, class unknown to the model, or a
        keypoint CSV that does not match the images.
    """
    set_dir = case.split_dir(split)
    require_datasets(case.root)
    require_dir(set_dir, f"create it with the {split} images (see DataSets/README.md)")
    task = spec.task if spec is not None else (task or detect_task(case, split))
    if task == "classification":
        return _list_classification(case, split, spec.classes if spec is not None else None, model_name, unlabelled_ok)
    if unlabelled_ok and spec is not None and not (set_dir / "keypoints.csv").is_file() and (set_dir / "images").is_dir():
        return _list_unlabelled(case, split, set_dir / "images", (), spec.keypoints, "keypoints")
    return _list_keypoints(case, split, spec.keypoints if spec is not None else None)


def _named_files(paths: list[Path]) -> list[Path]:
    """``paths``; a HuddError for the first whose name is not valid UTF-8 (hudd's tables are UTF-8)."""
    for path in paths:
        try:
            path.name.encode("utf-8")
        except UnicodeEncodeError:
            raise HuddError(f"{path.parent}: holds a file whose name is not valid UTF-8 ({ascii(path.name)}); rename it") from None
    return paths


def read_params(case: Case, split: str) -> pd.DataFrame | None:
    """The set's ``params.csv`` with ``image`` rewritten relative to ``DataSets/``, or None if absent."""
    path = case.split_dir(split) / "params.csv"
    if not path.is_file():
        return None
    fix = "fix or remove it"
    table = read_table(path, {"image": "str"}, fix=fix, written=False)
    if "cause" in table.columns:
        table["cause"] = read_table(path, {"cause": "str"}, fix=fix, written=False, dtype=str, keep_default_na=False)["cause"]
    table["image"] = [f"{split}/{name}" for name in table["image"]]
    return table


def mask_path(case: Case, image_id: str) -> Path:
    """Where the foreground mask of ``image_id`` (relative to ``DataSets/``) lives: ``<Set>/masks/<rest>.png``."""
    split, _, rest = str(image_id).partition("/")
    return (case.datasets / split / MASKS_FOLDER / rest).with_suffix(".png")


def has_masks(case: Case, split: str) -> bool:
    """True when ``DataSets/<split>/masks/`` holds at least one PNG."""
    folder = case.split_dir(split) / MASKS_FOLDER
    return folder.is_dir() and any(p.is_file() for p in folder.rglob("*.png"))


def read_mask(case: Case, image_id: str) -> np.ndarray | None:
    """The foreground mask of ``image_id`` as bool ``(H, W)`` (True on the object), or None when it has none.

    Raises
    ------
    HuddError
        The mask file is unreadable (the message names it).
    """
    path = mask_path(case, image_id)
    if not path.is_file():
        return None
    return read_image(path).max(axis=2) > 127


def read_masks(case: Case, ids, *, height: int, width: int, resize: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """The masks of ``ids`` at the model's size: bool ``(n, height, width)`` (all False where absent) and bool ``(n,)``
    (present). A mask is written at its image's size and resized as its image is (``resize``).

    Raises
    ------
    HuddError
        A mask is unreadable or not of its image's size.
    """
    masks = np.zeros((len(ids), height, width), bool)
    present = np.zeros(len(ids), bool)
    for i, image_id in enumerate(ids):
        mask = read_mask(case, image_id)
        if mask is None:
            continue
        if mask.shape != (height, width):
            _, image_width, image_height = image_header(case.datasets / image_id)
            if mask.shape != (image_height, image_width):
                raise HuddError(f"{mask_path(case, image_id)}: mask is {mask.shape[1]}x{mask.shape[0]}, its image is "
                                f"{image_width}x{image_height}; write the mask at the image's size")
            mask = resized(mask[:, :, None].astype(np.uint8) * 255, height, width, resize)[:, :, 0] > 127
        masks[i], present[i] = mask, True
    return masks, present


class ImageDataset(Dataset):
    """Images of a listing as normalised tensors, checked against the model spec.

    ``dataset[i]`` is ``(image, target, i)`` with image ``(C, H, W)`` float32. Decoded images are
    kept in memory (uint8) when the whole set fits in 2 GiB, so training epochs decode once. Every
    image's header is checked first (:func:`hudd.case.images.check_images`; ``seen``: the images a
    command already checked).
    """

    def __init__(self, case: Case, listing: SplitListing, spec: ModelSpec, *, model_name: str = "the model", cache: bool = True,
                 seen: set | None = None):
        check_images(case.datasets, listing.ids, channels=spec.channels, height=spec.height, width=spec.width, resize=spec.resize,
                     model_name=model_name, seen=seen)
        self.case = case
        self.listing = listing
        self.spec = spec
        self.model_name = model_name
        n_bytes = len(listing) * spec.channels * spec.height * spec.width
        self._cache = np.zeros((len(listing), spec.channels, spec.height, spec.width), np.uint8) if cache and n_bytes <= _CACHE_LIMIT_BYTES else None
        self._cached = np.zeros(len(listing), bool)

    def __len__(self) -> int:
        return len(self.listing)

    def path(self, index: int) -> Path:
        return self.case.datasets / self.listing.ids[index]

    def raw(self, index: int) -> np.ndarray:
        """The image as uint8 ``(C, H, W)``, checked against the spec."""
        if self._cache is not None and self._cached[index]:
            return self._cache[index]
        path = self.path(index)
        image = model_image(path, self.spec.channels, self.spec.height, self.spec.width, self.spec.resize)
        height, width, channels = image.shape
        spec = self.spec
        if (channels, height, width) != (spec.channels, spec.height, spec.width):
            found = describe_input(channels, height, width)
            raise HuddError(f"{path}: image is {found}, {self.model_name} expects {spec.describe_input()}; set resize (--resize, or "
                            "resize in hudd.toml), convert the data set or use a model trained for it")
        image = np.ascontiguousarray(image.transpose(2, 0, 1))
        if self._cache is not None:
            self._cache[index] = image
            self._cached[index] = True
        return image

    def with_spec(self, spec: ModelSpec, *, model_name: str) -> "ImageDataset":
        """The same images (sharing decoded pixels) for a spec that differs only in normalisation."""
        twin = copy.copy(self)
        twin.spec, twin.model_name = spec, model_name
        return twin

    def __getitem__(self, index: int):
        mean = np.asarray(self.spec.mean, dtype=np.float32)[:, None, None]
        std = np.asarray(self.spec.std, dtype=np.float32)[:, None, None]
        image = (self.raw(index).astype(np.float32) / 255.0 - mean) / std
        target = self.listing.targets[index]
        return torch.from_numpy(image), torch.as_tensor(target), index


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool = False, seed: int = 0, num_workers: int = 0,
                drop_last: bool = False) -> DataLoader:
    """A DataLoader whose shuffling depends only on ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, num_workers=num_workers, drop_last=drop_last)
