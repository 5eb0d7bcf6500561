"""What every step shares: the run context (case, config, workspace, model, device) and the
skip-or-run logic driven by input fingerprints.

A step is skipped when the manifest records it done with the same fingerprint (step name and
version, the config keys it reads, its input files' hashes) and its outputs exist; ``--force``
reruns it. A step replaces its old outputs only when it finishes; a resumable step killed mid-way
continues where it stopped when its fingerprint is unchanged.

Also here, so that no step imports another: what one step writes and others read back with the
whole context (the error-inducing images of ``testResult.csv``, a feature method's files, space and
extractors, Model Doctor's layers and aggregates). Readers that need only the workspace are in
:mod:`hudd.workspace.tables`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np
import pandas as pd
import torch

from ..models.case_model import InputSettings, open_case_model
from ..config import Config
from ..case.data import Case, ImageDataset, SplitListing, list_split
from ..cluster.feature_space import FeatureSpace
from ..core import distributed, rows
from ..core.device import resolve_device
from ..core.precision import resolve_precision
from ..core.errors import HuddError
from ..explain.features import FeatureExtractor, make_extractors
from ..models import LoadedModel
from ..core.progress import echo, set_quiet
from ..models.predictions import weak_model_reason
from ..retrain.doctor import conv_layers, default_layers
from ..workspace.readers import load_array, read_table, redo
from ..workspace.workspace import Workspace, fingerprint, utc_now
from ..core.files import file_hash, listing_hash, remove

__all__ = ["Context", "open_context", "run_step", "listing_rows", "sharded", "fill_rows", "weak_model_line", "error_rows", "error_positions", "describe_images", "method_paths", "method_space",
           "method_extractors", "resolve_doctor_layers", "read_doctor_aggregates"]


@dataclass
class Context:
    """Everything a step needs; built once per command by :func:`open_context`."""

    case: Case
    config: Config
    workspace: Workspace
    model: LoadedModel
    device: torch.device
    precision: torch.dtype = torch.float32  # the heavy loops' arithmetic (hudd.core.precision), checked against the device
    checked: set = field(default_factory=set)  # the images whose headers this command checked (hudd.case.images.check_images)
    cache: dict = field(default_factory=dict)  # what a step prepared once per command (rank 0 prepares it before its shard)

    @cached_property
    def model_hash(self) -> str:
        """The model file's hash and the spec it is used with: a changed input convention reruns the steps."""
        spec = json.dumps(self.model.spec.to_dict(), sort_keys=True)
        return hashlib.sha256(f"{file_hash(self.model.path)}\n{spec}".encode()).hexdigest()

    @property
    def model_name(self) -> str:
        return self.model.path.name

    def listing(self, split: str, *, unlabelled_ok: bool = False) -> SplitListing:
        return list_split(self.case, split, spec=self.model.spec, model_name=self.model_name, unlabelled_ok=unlabelled_ok)

    def listing_hash(self, listing: SplitListing) -> str:
        return listing_hash(self.case.datasets, listing.ids)

    def dataset(self, listing: SplitListing, *, cache: bool = True) -> ImageDataset:
        """The images of ``listing`` as the model's inputs (each header checked once per command)."""
        return ImageDataset(self.case, listing, self.model.spec, model_name=self.model_name, cache=cache, seen=self.checked)


@contextlib.contextmanager
def open_context(case_root: Path, config: Config, *, command: str, model: str | None = None, trust_model: bool = False,
                 arch: str | None = None) -> Iterator[Context]:
    """Load the case's model and hold the workspace lock while the command runs.

    Under torchrun only rank 0 gets here past the model: the other ranks serve its sharded steps
    (:func:`hudd.core.distributed.serve`) and end with :class:`hudd.core.distributed.WorkerDone`."""
    case = Case(Path(case_root))
    workspace = Workspace.of_case(case.root, config.workspace, flag=config.where("workspace"), base=config.base("workspace", case.root))
    loaded = open_case_model(case, model, trust_model=trust_model, arch=arch, settings=InputSettings.of(config))
    chosen = resolve_device(config.device, config.where("device"))
    precision = resolve_precision(config.precision, chosen, config.where("precision"))
    device = distributed.init(chosen)
    ctx = Context(case=case, config=config, workspace=workspace, model=loaded, device=device, precision=precision)
    if not distributed.is_main():  # under torchrun: compute rank 0's share of rows until it is done
        set_quiet(True)  # rank 0's progress bars and messages speak for all; each rank still says which rows it computes
        distributed.serve(ctx)
        raise distributed.WorkerDone
    echo(loaded.describe())
    try:
        with workspace.locked(command):
            yield ctx
    finally:
        distributed.release()


def run_step(ctx: Context, step: str, version: int, *, config: Mapping, inputs: Mapping[str, str],
             compute: Callable[[str, bool], list[Path]], force: bool = False, staged: bool = False) -> bool:
    """Run ``compute(fingerprint, resume)`` unless the step is current; record it done. Returns True if it ran.

    ``compute`` returns the output paths; ``resume`` is False under ``--force`` (a resumable step
    must then start over). A ``staged`` step writes into ``ws.staging(step)`` and commits at its end,
    so its old outputs stay whole and current until then; any other step is marked not done while
    it runs, so its old outputs never look current after it stopped half way.
    """
    ws = ctx.workspace
    fp = fingerprint(step, version, config, inputs)
    if not force and ws.is_current(step, fp):
        echo(f"{step}: inputs unchanged, skipping")
        return False
    started = utc_now()
    if not staged:
        ws.start_step(step, fp)
    outputs = compute(fp, not force)
    ws.finish_step(step, fp, inputs=inputs, outputs=outputs, config=config, started=started)
    return True


def listing_rows(listing: SplitListing, start: int, stop: int) -> SplitListing:
    """Rows ``start:stop`` of ``listing``, as a listing of their own."""
    return dataclasses.replace(listing, ids=tuple(listing.ids[start:stop]), targets=listing.targets[start:stop])


def sharded(ctx: Context, what: str, fn: Callable, n: int, *args, folder: Path, fingerprint: str, resume: bool) -> dict[str, np.ndarray]:
    """The row arrays of ``fn`` over rows ``0..n`` (``n`` > 0), batch by batch into the rows folder ``folder`` of
    :mod:`hudd.core.rows`, so that a killed run with the same ``fingerprint`` (and batch size and device type)
    computes only the batches not finished (none finished when not ``resume``). ``fn(ctx, start, stop, *args)``
    is a module-level generator yielding, for each batch of rows ``start..stop``, ``{name: rows}``. Alone, one
    call for every row not done; under torchrun, each rank on its own batch-aligned ranges
    (:func:`hudd.core.distributed.plan_batches`). The caller removes ``folder`` once its outputs are written."""
    fingerprint = f"{fingerprint} batch_size={ctx.config.batch_size} device={ctx.device.type}"
    done = rows.resume(folder, ctx.workspace.root, fingerprint, what, n) if resume else []
    if not done:
        remove(folder, ctx.workspace.root)
        folder.mkdir(parents=True)
    fill_rows(ctx, what, fn, n, *args, folder=folder, fingerprint=fingerprint, done=done)
    return rows.load(folder)


def fill_rows(ctx: Context, what: str, fn: Callable, n: int, *args, folder: Path, fingerprint: str, done: list) -> None:
    """Compute into the rows folder ``folder`` the rows of ``fn`` (see :func:`sharded`) that ``done`` leaves: alone,
    all of them; under torchrun, each rank its own batch-aligned ranges (:func:`hudd.core.distributed.plan_batches`)."""
    plans = distributed.plan_batches(n, ctx.config.batch_size, distributed.world_size(), done)
    distributed.everywhere(ctx, _shard, what, fn, n, args, folder, fingerprint, plans, done)


def _shard(ctx: Context, what: str, fn: Callable, n: int, args: tuple, folder: Path, fingerprint: str, plans: list, done: list) -> None:
    ranges = plans[distributed.rank()]
    distributed.rows_line(what, ranges)
    rows.fill(folder, fingerprint, ranges, done, lambda start, stop: fn(ctx, start, stop, *args), n, what)


def weak_model_line(ctx: Context) -> str:
    """What to say when the model is hardly better than chance on the TrainingSet (``trainResult.csv``; "" when it is
    not, or not tested yet): the input convention it was given, and how to set it."""
    path = ctx.workspace.train_result
    if not path.is_file():
        return ""
    columns = {"image": "str", "correct": "bool"} | ({"label": "str"} if ctx.model.spec.task == "classification" else {})
    reason = weak_model_reason(read_table(path, columns, fix=redo("test")), ctx.model.spec.task)
    if not reason:
        return ""
    return (f"{ctx.model.path}: {reason}; its input convention may not be the one it was trained with "
            f"({ctx.model.spec.convention()}): set it with --normalize imagenet|none|M1,M2,M3/S1,S2,S3, --channels, --image-size, "
            "--resize (or those keys in hudd.toml), or pass --allow-weak-model (allow_weak_model = true) to analyse it as it is")


def error_rows(ctx: Context) -> pd.DataFrame:
    """The error-inducing rows of ``testResult.csv``; a HuddError when it is missing or has none, or when the model is
    hardly better than chance on the TrainingSet (:func:`weak_model_line`) and ``allow_weak_model`` is off."""
    path = ctx.workspace.test_result
    if not path.is_file():
        raise HuddError(f"{path}: missing; run `hudd test {ctx.case.root}` first")
    entry = ctx.workspace.step_entry("test")
    if entry is not None and not entry.get("done"):
        raise HuddError(f"{path}: out of date (the last `hudd test` stopped before it finished); run `hudd test {ctx.case.root}` first")
    weak = "" if ctx.config.allow_weak_model else weak_model_line(ctx)
    if weak:
        raise HuddError(weak)
    columns = {"image": "str", "correct": "bool"} | ({"worst_keypoint": "int"} if ctx.model.spec.task == "keypoints" else
                                                     {"label": "str", "prediction": "str"})
    results = read_table(path, columns, fix=redo("test"))
    errors = results[~results["correct"]]
    if errors.empty:
        raise HuddError(f"{path}: the model makes no error on the {len(results)} TestSet images; there is nothing to analyse")
    return errors.reset_index(drop=True)


def error_positions(ctx: Context, errors: pd.DataFrame, listing) -> np.ndarray:
    """Positions in the TestSet ``listing`` of the error-inducing images; a HuddError when one is gone."""
    position = {image: i for i, image in enumerate(listing.ids)}
    missing = [image for image in errors["image"] if image not in position]
    if missing:
        raise HuddError(f"{ctx.workspace.test_result}: lists {missing[0]}, which is not in the TestSet any more; run `hudd test --force`")
    return np.array([position[image] for image in errors["image"]], dtype=np.int64)


def describe_images(ctx: Context) -> pd.Series:
    """Image -> class (or worst keypoint), from ``testResult.csv``: the titles of the contact sheets."""
    results = read_table(ctx.workspace.test_result, {"image": "str"}, fix=redo("test"))
    if ctx.model.spec.task == "keypoints":
        return results.set_index("image")["worst_keypoint"].map(lambda k: ctx.model.spec.keypoints[int(k)])
    return results.set_index("image")["label"]


def image_keypoints(ctx: Context) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """Keypoint models: test image -> (predicted, true) keypoints ``(K, 2)``, to draw on the exported images; else None."""
    spec = ctx.model.spec
    if spec.task != "keypoints":
        return None
    columns = [f"{name}_{axis}" for name in spec.keypoints for axis in ("x", "y")]
    results = read_table(ctx.workspace.test_result, {"image": "str", **{c: "float" for c in columns}}, fix=redo("test"))
    predicted = results[columns].to_numpy(np.float64).reshape(len(results), len(spec.keypoints), 2)
    listing = ctx.listing("TestSet")
    true = dict(zip(listing.ids, np.asarray(listing.targets, np.float64)))
    return {image: (points, true[image]) for image, points in zip(results["image"], predicted)}


def method_paths(ctx: Context, method: str, ws: Workspace | None = None) -> dict[str, Path]:
    """The files of a feature method in ``ClusterAnalysis/<method>/`` (of ``ws``, default the context's)."""
    folder = (ws or ctx.workspace).cluster_dir(method)
    names = ("features.npy", "space.npz", "embedding.npy", "clusters.csv", "grid.csv", "embedding.png", "method.csv")
    return {name: folder / name for name in names}


def method_space(ctx: Context, method: str) -> FeatureSpace:
    """The feature space a finished ``method`` clustered in (``space.npz``)."""
    return FeatureSpace.load(method_paths(ctx, method)["space.npz"])


def method_extractors(ctx: Context, method: str) -> list[FeatureExtractor]:
    """The extractors a finished ``method`` used, rebuilt from its ``method.csv`` (for ``hudd assign``)."""
    path = method_paths(ctx, method)["method.csv"]
    row = read_table(path, {"extractor_name": "str", "weights": "text"}, fix=redo(f"cluster --method {method}"),
                     keep_default_na=False).iloc[0]
    try:
        return make_extractors(row["extractor_name"], model=ctx.model.module, weights=Path(row["weights"]) if row["weights"] else None)
    except HuddError as exc:
        raise HuddError(f"{path}: its extractor cannot be rebuilt ({exc}); {redo(f'cluster --method {method}')}") from None


def _check_classifier(ctx: Context) -> None:
    if ctx.model.spec.task != "classification":
        raise HuddError(f"{ctx.model.path}: is a keypoint model; Model Doctor (hudd doctor, --treatment doctor) needs a classifier, "
                        "whose class scores it differentiates")


def resolve_doctor_layers(ctx: Context) -> list[str]:
    """``doctor_layers`` checked against the model's convolutional layers (default: the last two), in model order."""
    _check_classifier(ctx)
    model = ctx.model.module
    convs = conv_layers(model)
    if not convs:
        raise HuddError(f"{ctx.model.path}: has no convolutional layer for Model Doctor to diagnose")
    wanted = list(ctx.config.doctor_layers)
    if not wanted:
        return default_layers(model)
    unknown = [name for name in wanted if name not in convs]
    if unknown:
        raise HuddError(f"{ctx.model.path}: has no convolutional layer {unknown[0]!r}; set doctor_layers to some of {', '.join(convs)}")
    return [name for name in convs if name in set(wanted)]


def read_doctor_aggregates(ctx: Context) -> dict[str, np.ndarray]:
    """The raw aggregates ``(n_classes, K)`` per layer that the last ``hudd doctor`` wrote, in layer order."""
    ws = ctx.workspace
    if not ws.doctor_layers_csv.is_file():
        raise HuddError(f"{ws.doctor_layers_csv}: missing; run `hudd doctor {ctx.case.root}` first")
    layers = read_table(ws.doctor_layers_csv, {"layer": "str"}, fix=redo("doctor"))["layer"].tolist()
    return {name: load_array(ws.doctor_npy(name), ndim=2, fix=redo("doctor")) for name in layers}
