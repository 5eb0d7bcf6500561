"""The option groups of the ``hudd`` commands (:mod:`hudd.cli.commands`): click decorators, no logic.

Light on purpose: it imports click and :mod:`hudd.methods` only, so ``hudd --help`` and an argument
error answer without importing torch.
"""

from __future__ import annotations

import click

from ..config import flag_of, key_info
from ..methods import HUDD, METHOD_NAMES, PRIMARY, REGISTRY

__all__ = ["config_option", "config_options", "options", "model_options", "step_options", "INPUT_KEYS", "ARCH_HELP", "EXPORT_OPTION", "CLUSTER_OPTIONS", "METHOD_OPTIONS",
           "SELECTION_OPTIONS", "RETRAIN_OPTIONS", "DOCTOR_OPTIONS"]


def config_option(key: str):
    """The click option of config key ``key``, made from :class:`hudd.config.Config`: its type, choices and
    doc; default ``None`` (not given), so hudd.toml and the defaults apply, and :mod:`hudd.config` checks it."""
    default, meta = key_info(key)
    shown = ",".join(default) if isinstance(default, tuple) else str(default).lower() if isinstance(default, bool) else default
    text = meta["doc"][:1].upper() + meta["doc"][1:]
    help_text = f"{text} (default {shown!r})." if shown not in ("", ()) else f"{text}."
    flag = flag_of(key)
    if isinstance(default, bool):
        return click.option(f"{flag}/--no-{flag[2:]}", key, default=None, help=help_text)
    if meta["choices"]:
        kind = click.Choice(meta["choices"])
    else:
        kind = {int: int, float: float}.get(type(default), str)
    return click.option(flag, key, type=kind, default=None, help=help_text)


def config_options(*keys: str):
    """Add the command-line flags of these config keys (see :func:`config_option`)."""
    return options(tuple(config_option(key) for key in keys))


def options(group: tuple):
    """Apply click options in the order given (the first is listed first in --help)."""
    def decorate(fn):
        for option in reversed(group):
            fn = option(fn)
        return fn

    return decorate


INPUT_KEYS = ("channels", "image_size", "normalize", "resize")
ARCH_HELP = ("Architecture of a state_dict or training-checkpoint file: alexnet, alexnet-small, kpnet, or any torchvision "
             "classifier (resnet18, vgg16_bn, mobilenet_v3_large, efficientnet_b0, densenet121, convnext_tiny, ...).")


def model_options(fn):
    """``--model``, ``--trust-model``, ``--arch`` and the input convention: which model of DNNModels/ and how to load and feed it."""
    fn = config_options(*INPUT_KEYS)(fn)
    fn = click.option("--arch", default=None, help=ARCH_HELP)(fn)
    fn = click.option("--trust-model", is_flag=True, help="Allow a fully pickled model: loading it runs code stored in the file.")(fn)
    fn = click.option("--model", "model", default=None, help="Model file in DNNModels/ (default: the only one there).")(fn)
    return fn


_STEP_KEYS = ("device", "precision", "batch_size", "workspace", "allow_weak_model")


def step_options(fn):
    """What every step command takes: the model options, ``--force`` and the device/precision/batch/workspace flags."""
    fn = config_options(*_STEP_KEYS)(fn)
    fn = click.option("--force", is_flag=True, help="Rerun even if the inputs did not change.")(fn)
    return model_options(fn)


EXPORT_OPTION = config_option("export")
CLUSTER_OPTIONS = (config_option("k_min"), config_option("k_max"), EXPORT_OPTION)


METHOD_OPTIONS = (
    click.option("--method", type=click.Choice(METHOD_NAMES), default=HUDD, show_default=True,
                 help=f"hudd: the {PRIMARY} method's clusters, with the paper's heatmap clusters beside them (the paper's "
                      "method alone without hudd[pretrained]); "
                      + "; ".join(f"{method.name}: {method.description}" for method in REGISTRY.values())
                      + ". Feature methods write ClusterAnalysis/<method>/."),
    *(config_option(key) for key in ("extractor", "weights", "clusterer", "reducer")),
)


SELECTION_OPTIONS = (
    click.option("--method", type=click.Choice(METHOD_NAMES), default=None,
                 help="Whose clusters to select for: paper (HUDD's selected layer, by heatmaps) or a feature method run by "
                      "`hudd cluster --method` (compared where --select-in says); default: the active method (the last "
                      "`hudd cluster` or `hudd analyze`), for retrain without --sf/--budget the last assign's."),
    config_option("sf"),
    click.option("--budget", type=int, default=None, help="Label exactly this many images, split like the quotas."),
    config_option("select_in"),
)
RETRAIN_OPTIONS = (
    *(config_option(key) for key in ("retrain_epochs", "retrain_mix", "retrain_lr", "runs", "ddp", "baselines", "seed")),
    *SELECTION_OPTIONS,
    *(config_option(key) for key in ("treatment", "doctor_spatial", "doctor_lambda", "doctor_draws_train")),
)
DOCTOR_OPTIONS = tuple(config_option(key) for key in ("doctor_layers", "doctor_per_class", "doctor_draws", "doctor_delta", "doctor_v",
                                                       "seed"))
