"""Image files as users have them, made into a model's input the way torchvision's ImageFolder does.

- Mode: every image is converted to the model's (PIL's ``convert("L")`` for 1 channel, ``"RGB"`` for
  3): grayscale, RGBA, palette, CMYK, 1-bit and 16-bit images alike. 16-bit images are scaled to
  8 bits first (PIL would clip them).
- Size: an image of another size than the model's input is an error, unless the input convention
  says ``resize = "stretch"`` (resized to it, as ``transforms.Resize((h, w))``) or ``"crop"`` (the
  shorter side resized to it, then the centre cut out, as ``Resize(n)`` + ``CenterCrop(n)``); both
  bilinear, by torchvision's own functions.

Before a set is read, :func:`check_images` reads every image's header (mode and size, no pixels):
the images converted or resized are counted in one note per set, and the images of another size
without a resize policy are counted in one error that names the first few.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from PIL import Image

from ..core.errors import HuddError
from ..core.progress import note

__all__ = ["read_image", "image_header", "model_image", "resized", "check_images", "MODES", "GRAY_MODES"]

MODES = {1: "L", 3: "RGB", 4: "RGBA"}
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")  # PIL modes of grayscale files
_MODE_NAMES = {"L": "grayscale", "RGB": "RGB", "RGBA": "RGBA"}
_SHOWN = 3


def _open_error(path: Path, exc: BaseException) -> HuddError:
    if isinstance(exc, (Image.DecompressionBombWarning, Image.DecompressionBombError)):
        return HuddError(f"{path}: image too large to decode safely (over {Image.MAX_IMAGE_PIXELS} pixels); scale it down or remove it")
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return HuddError(f"{path}: cannot read image ({reason}); remove it or re-export it")


def image_header(path: Path) -> tuple[str, int, int]:
    """``(PIL mode, width, height)`` of an image file, from its header (no pixels decoded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                mode, (width, height) = image.mode, image.size
    except Exception as exc:  # PIL raises many types for corrupt files
        raise _open_error(path, exc) from None
    if width < 1 or height < 1:
        raise HuddError(f"{path}: cannot read image (it is {width}x{height} pixels); remove it or re-export it")
    return mode, width, height


def read_image(path: Path) -> np.ndarray:
    """Read an image as uint8 ``(H, W, C)`` in its own mode (CMYK as RGB); an unreadable or oversized file is a HuddError naming it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = np.asarray(iio.imread(path, plugin="pillow"))
            if image.ndim == 3 and image.shape[2] == 4 and iio.immeta(path, plugin="pillow").get("mode") == "CMYK":
                with Image.open(path) as opened:
                    image = np.asarray(opened.convert("RGB"))
    except Exception as exc:  # imageio raises many types for corrupt files
        raise _open_error(path, exc) from None
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.dtype == bool:  # 1-bit images
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise HuddError(f"{path}: unsupported image ({image.dtype}, shape {image.shape}); save it as 8-bit grayscale or RGB")
    return image[:, :, None] if image.ndim == 2 else image


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image)


def _cover(height: int, width: int, to_height: int, to_width: int) -> tuple[int, int]:
    """The size that covers ``to_height`` x ``to_width`` keeping the aspect ratio (for square targets, torchvision's ``Resize(n)``)."""
    if to_height / height >= to_width / width:
        return to_height, max(to_width, int(to_height * width / height))
    return max(to_height, int(to_width * height / width)), to_width


def model_image(path: Path, channels: int, height: int, width: int, resize: str) -> np.ndarray:
    """The image at ``path`` as uint8 ``(H, W, C)`` in the model's mode and, when ``resize`` says so, at its size.

    An image of another size with ``resize = "none"`` is returned as it is: the caller names the mismatch.
    """
    image = read_image(path)
    mode = MODES.get(channels)
    if mode is not None and image.shape[2] != channels:
        image = np.asarray(_pil(image).convert(mode))
        image = image[:, :, None] if image.ndim == 2 else image
    return resized(image, height, width, resize)


def resized(image: np.ndarray, height: int, width: int, resize: str) -> np.ndarray:
    """uint8 ``(H, W, C)`` ``image`` at ``height`` x ``width`` by the ``resize`` policy (as it is with ``"none"``)."""
    if resize == "none" or image.shape[:2] == (height, width):
        return image
    import torchvision.transforms.functional as TF

    picture = _pil(image)
    if resize == "stretch":
        picture = TF.resize(picture, [height, width])
    else:
        picture = TF.center_crop(TF.resize(picture, list(_cover(image.shape[0], image.shape[1], height, width))), [height, width])
    image = np.asarray(picture)
    return image[:, :, None] if image.ndim == 2 else image


@dataclass(frozen=True)
class _Scan:
    n: int
    converted: int
    off_size: list  # (image id, width, height) of the images of another size


def _scan(datasets: Path, ids: list[str], mode: str | None, height: int, width: int) -> _Scan:
    converted, off_size = 0, []
    for image_id in ids:
        found, w, h = image_header(datasets / image_id)
        converted += mode is not None and found != mode
        if (h, w) != (height, width):
            off_size.append((image_id, w, h))
    return _Scan(len(ids), converted, off_size)


def check_images(datasets: Path, ids, *, channels: int, height: int, width: int, resize: str, model_name: str,
                 seen: set | None = None) -> None:
    """Read the header of every image of ``ids`` (paths relative to ``datasets``) not in ``seen``, and add them to it.

    Prints one note per set for the images converted to the model's mode and one for those resized;
    ``seen`` (the images a command already checked, for this convention) keeps an image from being
    checked, and counted, twice.

    Raises
    ------
    HuddError
        An unreadable header, or images of another size than ``height`` x ``width`` with ``resize = "none"``:
        one line counting them and naming the first few.
    """
    seen = set() if seen is None else seen
    convention = (str(datasets), channels, height, width, resize)
    by_set: dict[str, list[str]] = {}
    for image_id in ids:
        if (convention, image_id) not in seen:
            by_set.setdefault(str(image_id).split("/", 1)[0], []).append(image_id)
    mode = MODES.get(channels)
    for split, members in by_set.items():
        scan = _scan(datasets, members, mode, height, width)
        if scan.off_size and resize == "none":
            shown = ", ".join(f"{image_id} is {w}x{h}" for image_id, w, h in scan.off_size[:_SHOWN])
            more = ", ..." if len(scan.off_size) > _SHOWN else ""
            raise HuddError(f"{datasets / split}: {len(scan.off_size)} of {scan.n} images are not {width}x{height}, the input size of "
                            f"{model_name} ({shown}{more}); set resize to stretch or crop (--resize, or resize in hudd.toml) to "
                            "resize them as they are read, or resize the files")
        if scan.converted:
            note(f"{scan.converted} of {scan.n} {split} images converted to {_MODE_NAMES[mode]}")
        if scan.off_size:
            note(f"{len(scan.off_size)} of {scan.n} {split} images resized to {width}x{height} ({resize})")
        seen.update((convention, image_id) for image_id in members)
