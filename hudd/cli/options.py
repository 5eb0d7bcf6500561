"""The option groups of the ``hudd`` commands (:mod:`hudd.cli.commands`): click decorators, no logic.

Light on purpose: it imports click and :mod:`hudd.methods` only, so ``hudd --help`` and an argument
error answer without importing torch.
"""

from __future__ import annotations

from pathlib import Path

import click

from ..methods import HUDD, METHOD_NAMES, PRIMARY, REGISTRY

__all__ = ["config_options", "options", "model_options", "step_options", "EXPORT_OPTION", "CLUSTER_OPTIONS", "METHOD_OPTIONS",
           "SELECTION_OPTIONS", "RETRAIN_OPTIONS", "DOCTOR_OPTIONS"]


def config_options(*names: str):
    """Add the command-line flags of these config keys (``batch_size`` -> ``--batch-size``)."""
    flags = {
        "device": click.option("--device", default=None, help="auto, cpu or cuda (default: auto)."),
        "batch_size": click.option("--batch-size", "batch_size", type=int, default=None, help="Images per batch."),
        "seed": click.option("--seed", type=int, default=None, help="Random seed (default 0)."),
        "epochs": click.option("--epochs", type=int, default=None, help="Maximum training epochs."),
        "lr": click.option("--lr", type=float, default=None, help="Learning rate."),
        "workspace": click.option("--workspace", default=None, help="Workspace folder, relative to the current folder (default <case>/HUDD)."),
    }

    return options(tuple(flags[name] for name in names))


def options(group: tuple):
    """Apply click options in the order given (the first is listed first in --help)."""
    def decorate(fn):
        for option in reversed(group):
            fn = option(fn)
        return fn

    return decorate


def model_options(fn):
    """``--model``, ``--trust-model`` and ``--arch``: which model of DNNModels/ and how to load it."""
    fn = click.option("--arch", default=None, help="Architecture of a bare state_dict model file.")(fn)
    fn = click.option("--trust-model", is_flag=True, help="Allow a fully pickled model: loading it runs code stored in the file.")(fn)
    fn = click.option("--model", "model", default=None, help="Model file in DNNModels/ (default: the only one there).")(fn)
    return fn


_STEP_KEYS = ("device", "batch_size", "workspace")


def step_options(fn):
    """What every step command takes: the model options, ``--force`` and the device/batch/workspace flags."""
    fn = config_options(*_STEP_KEYS)(fn)
    fn = click.option("--force", is_flag=True, help="Rerun even if the inputs did not change.")(fn)
    return model_options(fn)


EXPORT_OPTION = click.option("--export", "export", type=click.Choice(["selected", "all"]), default=None,
                             help="Export the selected layer's clusters (default) or every layer's.")
CLUSTER_OPTIONS = (
    click.option("--k-min", "k_min", type=int, default=None, help="Smallest number of clusters tried (default 2)."),
    click.option("--k-max", "k_max", type=int, default=None, help="Largest number of clusters tried (default 500, at most errors/2)."),
    EXPORT_OPTION,
)


METHOD_OPTIONS = (
    click.option("--method", type=click.Choice(METHOD_NAMES), default=HUDD, show_default=True,
                 help=f"hudd: the {PRIMARY} method's clusters, with the paper's heatmap clusters beside them (the paper's "
                      "method alone without hudd[pretrained]); "
                      + "; ".join(f"{method.name}: {method.description}" for method in REGISTRY.values())
                      + ". Feature methods write ClusterAnalysis/<method>/."),
    click.option("--extractor", default=None,
                 help="Feature methods: 'model' (its penultimate layer), 'margins' (its logit margins), "
                      "'efficientnet_lite0[:block]', or a torchvision backbone name with --weights; join several with + "
                      "(default: the method's)."),
    click.option("--weights", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="Feature methods: state_dict file of the --extractor backbone (nothing is downloaded)."),
    click.option("--clusterer", type=click.Choice(["dbscan", "hdbscan", "ward"]), default=None,
                 help="Feature methods (default: the method's: dbscan for blackbox, ward otherwise)."),
    click.option("--reducer", type=click.Choice(["auto", "umap", "pca"]), default="auto", show_default=True,
                 help="blackbox only; auto = UMAP when umap-learn is installed (hudd[umap]), else PCA."),
)


SELECTION_OPTIONS = (
    click.option("--method", type=click.Choice(METHOD_NAMES), default=None,
                 help="Whose clusters to select for: paper (HUDD's selected layer, by heatmaps) or a feature method run by "
                      "`hudd cluster --method` (compared where config select_in says); default: the active method (the last `hudd cluster` "
                      "or `hudd analyze`), for retrain without --sf/--budget the last assign's."),
    click.option("--sf", type=float, default=None, help="Selection factor of equation 7 (default 0.3)."),
    click.option("--budget", type=int, default=None, help="Label exactly this many images, split like the quotas."),
)
RETRAIN_OPTIONS = (
    click.option("--epochs", "retrain_epochs", type=int, default=None,
                 help="Passes over the selected images (paired) or epochs over TrainingSet + them (union); default 30."),
    click.option("--mix", "retrain_mix", type=click.Choice(["paired", "union"]), default=None,
                 help="paired (default): each pass the selected images + as many fresh random TrainingSet images; union (the "
                      "paper's): each epoch the whole TrainingSet + the selected images."),
    click.option("--runs", type=int, default=None, help="Repeat every method with this many seeds (default 1; the paper used 10)."),
    click.option("--baselines/--no-baselines", default=None, help="Also train the paper's baselines B1 and B2 (default: yes)."),
    click.option("--seed", type=int, default=None, help="First seed (default 0)."),
    *SELECTION_OPTIONS,
    click.option("--treatment", type=click.Choice(["none", "doctor"]), default=None,
                 help="Also fine-tune with Model Doctor's constraints: methods doctor and hudd+doctor (default none)."),
    click.option("--spatial", "doctor_spatial", type=click.Choice(["auto", "on", "off"]), default=None,
                 help="Model Doctor's space-wise constraint from DataSets/<Set>/masks/ (default auto: when the TrainingSet has masks)."),
    click.option("--doctor-lambda", "doctor_lambda", type=float, default=None, help="Weight of Model Doctor's constraints (default 1)."),
    click.option("--doctor-draws", "doctor_j_train", type=int, default=None,
                 help="Noise draws per image in the treatment (default 10; 1-2 on a CPU)."),
)
DOCTOR_OPTIONS = (
    click.option("--layers", "doctor_layers", default=None, help="Comma-separated convolutional layers (default: the last two)."),
    click.option("--per-class", "doctor_t", type=int, default=None, help="Most confident, correct training images per class (T, default 100)."),
    click.option("--draws", "doctor_j", type=int, default=None, help="Noise draws per image (J, default 10)."),
    click.option("--delta", "doctor_delta", type=float, default=None, help="Feature-map noise uniform in [-delta, delta] (default 0.1)."),
    click.option("--v", "doctor_v", type=float, default=None, help="A channel is unrelated to a class below v times its largest (default 0.5)."),
    click.option("--seed", type=int, default=None, help="Seed of the noise (default 0)."),
)
