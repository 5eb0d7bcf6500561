"""The model of a case: choose the file in ``DNNModels/``, load it safely, and fill in a spec from the data.

Every command that reads a model goes through :func:`open_case_model`, so ``--model``,
``--trust-model`` and ``--arch`` behave the same everywhere. Files that carry no spec (bare
state_dicts, pickled modules) get one from the case's TrainingSet: channels and size from its
first image, class names from its folders (or keypoint names from ``keypoints.csv``), and the
identity normalisation (pixels in [0, 1]).
"""

from __future__ import annotations

from ..case.data import Case, SplitListing, image_shape, keypoint_groups, list_split
from ..core.errors import HuddError
from .checkpoint import LoadedModel, ModelSpec, find_model_file, load_model

__all__ = ["open_case_model", "spec_from_case", "spec_for_listing"]


def spec_for_listing(listing: SplitListing, arch: str, channels: int, size: int) -> ModelSpec:
    """A :class:`ModelSpec` for ``arch`` on square ``size`` px images of ``listing``'s classes or keypoints.

    Normalisation is the identity (pixels in [0, 1]); :mod:`hudd.models.train` replaces it with the
    training set's statistics.
    """
    if listing.task == "keypoints":
        kwargs = {"in_channels": channels, "num_keypoints": len(listing.keypoints), "image_size": size}
    else:
        kwargs = {"in_channels": channels, "num_classes": len(listing.classes), "image_size": size}
    return ModelSpec(arch=arch, arch_kwargs=kwargs, task=listing.task, channels=channels, height=size, width=size,
                     mean=(0.0,) * channels, std=(1.0,) * channels, classes=listing.classes, keypoints=listing.keypoints,
                     keypoint_groups=keypoint_groups(listing.keypoints) if listing.task == "keypoints" else {})


def spec_from_case(case: Case, arch: str) -> ModelSpec:
    """A :class:`ModelSpec` for ``arch`` derived from ``case``'s TrainingSet (see module docstring)."""
    listing = list_split(case, "TrainingSet")
    channels, height, width = image_shape(case.datasets / listing.ids[0])
    if height != width:
        raise HuddError(f"{case.datasets / listing.ids[0]}: image is {width}x{height}; hudd's architectures take square images, crop or pad the data set")
    return spec_for_listing(listing, arch, channels, height)


def open_case_model(case: Case, name: str | None = None, *, trust_model: bool = False, arch: str | None = None) -> LoadedModel:
    """Load ``DNNModels/<name>`` (or the only model there) of ``case``; see :func:`hudd.models.load_model`."""
    path = find_model_file(case.models, name)
    return load_model(path, trust_model=trust_model, arch=arch, spec_from_data=lambda found_arch: spec_from_case(case, arch or found_arch))
