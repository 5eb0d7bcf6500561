"""Steps 6-7, ``hudd retrain``: fine-tune on the training set plus the balanced, labelled unsafe set,
and compare with the paper's baselines (RQ2).

- reads ``UnsafeSet/labels.csv`` (filled in by an engineer, or pre-filled by ``hudd assign``);
  a missing, extra or unknown label stops with a message naming the rows;
- HUDD: the labelled unsafe set bootstrapped so every cluster has ``max_i |U_Ci|`` images;
- B1 / B2 (same labelling budget, needs a labelled improvement set): a random subset of the
  improvement set as large as the unsafe set; B1 keeps its images the model misclassifies, B2 all
  of them; each bootstrapped to the size of HUDD's balanced set;
- every method fine-tunes a copy of the original weights on TrainingSet + its extra images, mixed
  as ``retrain_mix`` says (:func:`hudd.retrain.sampling.mixed_rows`: ``paired``, the default, where each
  pass shows as many extra images as were labelled, whatever the size of the balanced set, so that every
  method and every clustering trains equally long on the same budget; or ``union``, the paper's), with the one training loop (SGD, lr 1e-3, momentum 0.9, weight decay 5e-4 by default), ``runs``
  times with seeds ``seed, seed + 1, ...``;
- with ``treatment = "doctor"`` (classifiers only), Model Doctor's treatment (:mod:`hudd.retrain.doctor`):
  ``doctor`` fine-tunes on the training set alone, as the paper, and ``hudd+doctor`` on the training
  set + HUDD's balanced unsafe set, both with the channel-wise constraint (equation 5) on the
  diagnosed layers, plus the space-wise one (equation 6) when ``doctor_spatial`` is ``on``, or
  ``auto`` and ``DataSets/TrainingSet/masks/`` holds masks (``on`` without masks stops with a message
  saying where they go). The class aggregates come from ``hudd doctor``'s outputs (the pipeline runs
  that step first; this one stops with a message when it has not run) and its fingerprint is an
  input. Same seeds as the other methods;
- writes ``Retrain/metrics.csv`` (run, method, seed, accuracy, per class, per root-cause cluster's
  test images, on hazard images and per cause when ``params.csv`` exists) and the first HUDD
  model to ``DNNModels/<model>-hudd.pt`` (the input model file is never touched).

Under torchrun the runs are spread over the processes (run i on rank i mod world), each trained as alone;
with ``ddp``, every run is trained over all processes with DistributedDataParallel
(:func:`hudd.retrain.training.fit`) and rank 0 evaluates it: the same seed and number of processes give the
same files, not a single process's (a step averages the gradients of one batch per process).
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Subset

from .. import __version__
from ..case.data import MASKS_FOLDER, ImageDataset, SplitListing, has_masks, mask_path, read_masks, read_params
from ..retrain.doctor import DoctorConstraint, background_masks, dilation_px
from ..core import distributed
from ..core.errors import HuddError
from ..models import save_checkpoint
from ..models.predictions import predict
from ..core.progress import echo
from ..retrain.sampling import bootstrap_balance, bootstrap_to, mixed_rows, reduced_improvement_set
from ..retrain.comparison import DOCTOR_METHODS, compare
from ..retrain.training import TrainSettings, fit
from ..core.files import file_hash, listing_hash, write_csv
from ..case.labels import LABELS_FIX
from ..case.labels import read_labels as labels_table
from ..workspace.tables import assigned_method, read_unsafe
from .common import Context, read_doctor_aggregates, resolve_doctor_layers, run_step

__all__ = ["RetrainOutcome", "run", "check_ddp", "read_labels", "VERSION", "DOCTOR_KEYS"]

VERSION = 2  # 2: paired passes as long as the labelled set, not the balanced one
DOCTOR_KEYS = ("treatment", "doctor_draws_train", "doctor_delta", "doctor_v", "doctor_lambda", "doctor_spatial")


@dataclass
class RetrainOutcome:
    """``metrics.csv`` (one row per run and method) and its comparison tables: on the whole test set, and on
    the images with an injected hazard (None without ``params.csv``)."""

    ran: bool
    metrics: pd.DataFrame
    comparison: pd.DataFrame
    hazard_comparison: pd.DataFrame | None = None


def _rows(lines: np.ndarray) -> str:
    shown = ", ".join(str(int(i) + 2) for i in lines[:8])
    return shown + (", ..." if len(lines) > 8 else "")


def read_labels(ctx: Context) -> tuple[pd.DataFrame, np.ndarray]:
    """``labels.csv`` checked against ``unsafe.csv`` and the model's outputs.

    Returns the table (image, cluster) and the targets: class indices ``(n,)``, or keypoint
    coordinates ``(n, K, 2)`` from the ``<keypoint>_x, <keypoint>_y`` columns.
    """
    ws = ctx.workspace
    if not ws.labels_csv.is_file() or not ws.unsafe_csv.is_file():
        raise HuddError(f"{ws.labels_csv}: missing; run `hudd assign {ctx.case.root}` first, then label the images it lists")
    labels = labels_table(ws.labels_csv, fix=LABELS_FIX)
    unsafe = read_unsafe(ws)
    spec = ctx.model.spec
    wanted = ["label"] if spec.task == "classification" else [f"{name}_{axis}" for name in spec.keypoints for axis in ("x", "y")]
    if not {"image", *wanted} <= set(labels.columns):
        raise HuddError(f"{ws.labels_csv}: needs the columns image, {', '.join(wanted[:4])}{', ...' if len(wanted) > 4 else ''}; "
                        f"found {', '.join(labels.columns)}")
    extra = np.flatnonzero(~labels["image"].isin(set(unsafe["image"])) | labels["image"].duplicated())
    if len(extra):
        raise HuddError(f"{ws.labels_csv}: rows {_rows(extra)} are not (or again) images of the unsafe set in {ws.unsafe_csv.name}; remove them")
    absent = sorted(set(unsafe["image"]) - set(labels["image"]))
    if absent:
        raise HuddError(f"{ws.labels_csv}: {len(absent)} unsafe images have no row (first: {absent[0]}); add them with their label")
    values = labels[wanted].apply(lambda column: column.str.strip())
    blank = np.flatnonzero((values == "").any(axis=1))
    if len(blank):
        what = f"one of {', '.join(spec.classes)}" if spec.task == "classification" else "the keypoints' pixel coordinates"
        raise HuddError(f"{ws.labels_csv}: rows {_rows(blank)} have no label; fill in {what}")
    if spec.task == "classification":
        unknown = np.flatnonzero(~values["label"].isin(spec.classes))
        if len(unknown):
            raise HuddError(f"{ws.labels_csv}: rows {_rows(unknown)} have a label the model does not know "
                            f"({values['label'].iloc[unknown[0]]!r}); use one of {', '.join(spec.classes)}")
        targets = np.array([spec.classes.index(label) for label in values["label"]], dtype=np.int64)
    else:
        coords = values.apply(pd.to_numeric, errors="coerce").to_numpy(np.float32)
        bad = np.flatnonzero(~np.isfinite(coords).all(axis=1))
        if len(bad):
            raise HuddError(f"{ws.labels_csv}: rows {_rows(bad)} have a coordinate that is not a number; fix them")
        targets = coords.reshape(len(labels), len(spec.keypoints), 2)
    table = labels[["image"]].merge(unsafe[["image", "cluster"]], on="image", how="left")
    return table, targets


def _correct(ctx: Context, outputs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per image: the prediction is right (classification) or within ``error_px`` on average (keypoints)."""
    if ctx.model.spec.task == "classification":
        return outputs.argmax(1) == targets
    return np.linalg.norm(outputs - targets, axis=-1).mean(axis=1) <= ctx.config.error_px


def _evaluate(ctx: Context, model: torch.nn.Module, test: ImageDataset, groups: dict[str, np.ndarray]) -> dict:
    outputs = predict(model, test, batch_size=ctx.config.batch_size, device=ctx.device, desc="evaluate")
    correct = _correct(ctx, outputs, test.listing.targets)
    row = {"accuracy": float(correct.mean())}
    if ctx.model.spec.task == "keypoints":
        row["mean_error_px"] = float(np.linalg.norm(outputs - test.listing.targets, axis=-1).mean())
    for name, members in groups.items():
        row[name] = float(correct[members].mean()) if len(members) else float("nan")
    return row


def _test_groups(ctx: Context, test: SplitListing) -> dict[str, np.ndarray]:
    """Test-image index sets per class, per root-cause cluster, on hazards and per cause."""
    ids = pd.Series(range(len(test)), index=list(test.ids))
    groups = {f"class_{c}": np.flatnonzero(test.targets == k) for k, c in enumerate(ctx.model.spec.classes)} \
        if ctx.model.spec.task == "classification" else {}
    clusters = pd.read_csv(ctx.workspace.method_clusters_csv(assigned_method(ctx.workspace)))
    for name, members in clusters.groupby("cluster", sort=False)["image"]:
        groups[f"cluster_{name}"] = ids.reindex(members).dropna().to_numpy(np.int64)
    params = read_params(ctx.case, "TestSet")
    if params is not None and "cause" in params.columns:
        cause = params.set_index("image")["cause"].reindex(list(test.ids))
        groups["hazard"] = np.flatnonzero((cause != "none").to_numpy())
        for name in sorted(cause.dropna().unique()):
            groups[f"cause_{name}"] = np.flatnonzero((cause == name).to_numpy())
    return groups


def _spatial(ctx: Context) -> bool:
    """Whether the treatment adds the space-wise constraint (``doctor_spatial``: auto, on or off)."""
    mode = ctx.config.doctor_spatial
    if mode == "off":
        return False
    found = has_masks(ctx.case, "TrainingSet")
    if mode == "on" and not found:
        folder = ctx.case.split_dir("TrainingSet") / MASKS_FOLDER
        raise HuddError(f"{folder}: no foreground masks, and the space-wise constraint ({ctx.config.where('doctor_spatial')} on) needs "
                        "them; put one "
                        f"8-bit PNG per training image at {folder}/<class>/<image name>.png (255 on the object, 0 elsewhere; "
                        "`hudd simulate` writes them), or pass --doctor-spatial off (doctor_spatial = \"off\" in hudd.toml)")
    return found


def _backgrounds(ctx: Context, ids: list[str], rows: np.ndarray, n_pool: int) -> torch.Tensor:
    """Background weights ``(n_pool, H, W)`` uint8 of the pool rows ``rows`` that have a mask; zero elsewhere."""
    spec = ctx.model.spec
    masks, present = read_masks(ctx.case, [ids[i] for i in rows], height=spec.height, width=spec.width, resize=spec.resize)
    background = torch.zeros((n_pool, spec.height, spec.width), dtype=torch.uint8)
    if present.any():
        weights = background_masks(torch.from_numpy(masks[present]), pixels=dilation_px(spec.height))
        background[torch.from_numpy(rows[present])] = weights.round().to(torch.uint8)
    return background


@dataclass
class _Setup:
    """What every run needs, read once per command and process: the labels, the sets, the treatment's aggregates,
    and (built on first use) the images: the pool (TrainingSet, then ImprovementSet with the engineers' labels),
    the TestSet and its groups, the unsafe images' pool rows, the background masks."""

    labels: pd.DataFrame
    label_targets: np.ndarray
    train: SplitListing
    improve: SplitListing
    test: SplitListing
    baselines: bool
    treated: bool
    spatial: bool
    aggregates: dict | None
    output_model: object
    data: dict = dataclasses.field(default_factory=dict)


def check_ddp(config) -> None:
    """A HuddError when ``ddp`` is asked for alone (it needs torchrun's processes) or with Model Doctor's treatment (its
    loss differentiates the model's gradients, which DistributedDataParallel cannot)."""
    if not config.ddp:
        return
    if not distributed.active():
        raise HuddError(f"{config.where('ddp')}: trains each run over several processes; launch with torchrun "
                        "(torchrun --standalone --nproc-per-node=N -m hudd retrain ...) or leave it out")
    if config.treatment == "doctor":
        raise HuddError(f"{config.where('ddp')}: Model Doctor's treatment (treatment = doctor) cannot train under DistributedDataParallel; "
                        "leave out --ddp (the runs are then spread over the processes)")


def _setup(ctx: Context) -> _Setup:
    if "retrain" not in ctx.cache:
        config = ctx.config
        treated = config.treatment == "doctor"
        if treated:  # a keypoint model, unknown doctor_layers or missing masks stop here, before anything runs
            resolve_doctor_layers(ctx)
        spatial = treated and _spatial(ctx)
        labels, label_targets = read_labels(ctx)
        train = ctx.listing("TrainingSet")
        improve = ctx.listing("ImprovementSet", unlabelled_ok=True)
        aggregates = read_doctor_aggregates(ctx) if treated and (ctx.workspace.step_entry("doctor") or {}).get("done") else None
        ctx.cache["retrain"] = _Setup(labels, label_targets, train, improve, ctx.listing("TestSet"),
                                      config.baselines and improve.labelled, treated, spatial, aggregates,
                                      ctx.case.models / f"{ctx.model.path.stem}-hudd.pt")
    return ctx.cache["retrain"]


def _data(ctx: Context, setup: _Setup) -> dict:
    """The images of the runs (built once): one pool (training set, then improvement set with the engineers'
    labels) so images decode once, the TestSet and its groups, the unsafe images' rows and the background masks."""
    if not setup.data:
        train, improve, labels = setup.train, setup.improve, setup.labels
        improve_targets = improve.targets.copy()
        position = {image: len(train) + i for i, image in enumerate(improve.ids)}
        for image, target in zip(labels["image"], setup.label_targets):
            improve_targets[position[image] - len(train)] = target
        pool = SplitListing("pool", train.task, train.ids + improve.ids, np.concatenate([train.targets, improve_targets]),
                            classes=train.classes, keypoints=train.keypoints)
        unsafe_rows = np.array([position[image] for image in labels["image"]])
        background = _backgrounds(ctx, pool.ids, np.concatenate([np.arange(len(train)), np.unique(unsafe_rows)]).astype(np.int64),
                                  len(pool)) if setup.spatial else None
        setup.data.update(pool=ctx.dataset(pool), test=ctx.dataset(setup.test), groups=_test_groups(ctx, setup.test),
                          unsafe_rows=unsafe_rows, background=background)
    return setup.data


def _train_share(ctx: Context, plans: list) -> dict[int, list[dict]]:
    """This rank's runs (``plans[rank]``; under torchrun run i is rank i % world's, with ``ddp`` every rank's)."""
    runs = plans[distributed.rank()]
    distributed.rank_line("retrain", "runs " + (", ".join(str(i + 1) for i in runs) or "none") + (" (DDP)" if ctx.config.ddp else ""))
    return _train_runs(ctx, runs)


def _train_runs(ctx: Context, runs: list[int]) -> dict[int, list[dict]]:
    """The metrics rows of each run in ``runs`` (every method, seed ``seed + run``); run 0's HUDD model is saved. With
    ``ddp``, every rank trains and only rank 0 evaluates and saves."""
    if not runs:
        return {}
    config = ctx.config
    setup = _setup(ctx)
    data = _data(ctx, setup)
    train, improve, labels = setup.train, setup.improve, setup.labels
    settings = TrainSettings(epochs=config.retrain_epochs, lr=config.retrain_lr, optimizer="sgd", momentum=config.momentum,
                             weight_decay=config.weight_decay, batch_size=config.batch_size, schedule="constant", precision=ctx.precision)
    original_improve = None
    evaluates = not config.ddp or distributed.is_main()
    results = {}
    for run_index in runs:
        seed = config.seed + run_index
        rng = np.random.default_rng([seed, 7])
        balanced = data["unsafe_rows"][bootstrap_balance(labels["cluster"].to_numpy(), rng)]
        extras = {"hudd": balanced}
        if setup.baselines:
            if original_improve is None:
                improve_data = ctx.dataset(improve)
                original_improve = predict(ctx.model.module, improve_data, batch_size=config.batch_size, device=ctx.device,
                                           desc="predict ImprovementSet")
            reduced = reduced_improvement_set(len(improve), len(labels), rng)
            wrong = reduced[~_correct(ctx, original_improve[reduced], improve.targets[reduced])]
            extras["B1"] = len(train) + wrong[bootstrap_to(len(wrong), len(balanced), rng)]
            extras["B2"] = len(train) + reduced[bootstrap_to(len(reduced), len(balanced), rng)]
        if setup.treated:
            extras["doctor"] = np.zeros(0, np.int64)
            extras["hudd+doctor"] = balanced
        for method, extra in extras.items():
            torch.manual_seed(seed)
            model = copy.deepcopy(ctx.model.module)
            picked, epochs = mixed_rows(len(train), extra, config.retrain_epochs, config.retrain_mix,
                                        np.random.default_rng([seed, 11]),  # the same training rows for every method
                                        pass_size=len(labels))  # and equally many of them: the labelling budget per pass
            subset = Subset(data["pool"], picked.tolist())
            constraint = DoctorConstraint(setup.aggregates, v=config.doctor_v, delta=config.doctor_delta, n_draws=config.doctor_draws_train,
                                          weight=config.doctor_lambda, background=data["background"], seed=seed) \
                if method in DOCTOR_METHODS else None
            fit(model, subset, None, task=train.task, settings=dataclasses.replace(settings, seed=seed, epochs=epochs),
                device=ctx.device, desc=f"retrain {method} run {run_index + 1}/{config.runs}", extra_loss=constraint, ddp=config.ddp)
            if not evaluates:
                continue
            results.setdefault(run_index, []).append({"run": run_index + 1, "method": method, "seed": seed, "n_extra": len(extra),
                                                      **_evaluate(ctx, model, data["test"], data["groups"])})
            if method == "hudd" and run_index == 0:  # run 0 is rank 0's under torchrun
                meta = {**ctx.model.meta, "hudd_version": __version__, "retrained_from": ctx.model.path.name,
                        "retrained": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        "unsafe_images": len(labels), "balanced_images": len(balanced), "seed": seed,
                        "epochs": config.retrain_epochs}
                save_checkpoint(setup.output_model, model.cpu(), ctx.model.spec, meta)
    return results


def run(ctx: Context, *, force: bool = False) -> RetrainOutcome:
    """Run (or skip, when current) the retraining; see the module docstring."""
    ws = ctx.workspace
    config = ctx.config
    check_ddp(config)
    setup = _setup(ctx)
    train, improve, test, labels = setup.train, setup.improve, setup.test, setup.labels
    if config.baselines and not improve.labelled:
        echo("retrain: the improvement set is unlabelled, so the baselines B1 and B2 (which need labels) are skipped")
    keys = ("retrain_epochs", "retrain_mix", "retrain_lr", "momentum", "weight_decay", "batch_size", "seed", "runs", "baselines", "precision")
    inputs = {"assign": ws.step_entry("assign")["fingerprint"], "labels": file_hash(ws.labels_csv), "model": ctx.model_hash,
              "TrainingSet": ctx.listing_hash(train), "TestSet": ctx.listing_hash(test)}
    if setup.treated:
        if setup.aggregates is None:
            raise HuddError(f"{ws.doctor_dir}: no finished diagnosis, which the treatment needs; run `hudd doctor {ctx.case.root}` "
                            f"first (`hudd retrain` runs it for you)")
        keys += DOCTOR_KEYS
        inputs["doctor"] = ws.step_entry("doctor")["fingerprint"]
        if setup.spatial:  # the masks of the training and the unsafe images
            paths = [mask_path(ctx.case, image) for image in [*train.ids, *labels["image"]]]
            inputs["masks"] = listing_hash(ctx.case.datasets, [str(p.relative_to(ctx.case.datasets)) for p in paths if p.is_file()])

    def compute(fingerprint: str, resume: bool):
        data = _data(ctx, setup)
        rows = [{"run": 0, "method": "original", "seed": -1, **_evaluate(ctx, ctx.model.module, data["test"], data["groups"])}]
        world = distributed.world_size()
        plans = [list(range(config.runs)) if config.ddp else list(range(r, config.runs, world)) for r in range(world)]
        by_run: dict[int, list[dict]] = {}
        for part in distributed.everywhere(ctx, _train_share, plans):
            by_run.update(part)
        for run_index in range(config.runs):
            rows += by_run[run_index]
        metrics = pd.DataFrame(rows)
        write_csv(ws.metrics_csv, metrics)
        write_csv(ws.retrain_dir / "comparison.csv", compare(metrics))
        return [ws.metrics_csv, ws.retrain_dir / "comparison.csv"]

    settings = {key: getattr(config, key) for key in keys} | {"device": ctx.device.type}
    if config.ddp:  # DDP's weights depend on the number of processes
        settings["ddp_processes"] = distributed.world_size()
    ran = run_step(ctx, "retrain", VERSION, config=settings, inputs=inputs, compute=compute, force=force)
    metrics = pd.read_csv(ws.metrics_csv)
    return RetrainOutcome(ran, metrics, compare(metrics), compare(metrics, "hazard") if "hazard" in metrics.columns else None)
