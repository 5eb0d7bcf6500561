"""The ``hudd`` command line: click commands that parse, call one function, and print. No logic here.

A :class:`hudd.errors.HuddError` from any command becomes ``hudd: error: <message>`` on stderr and
exit status 2 (with the traceback only under ``--debug``).
"""

from __future__ import annotations

import contextlib
import errno
import sys
from pathlib import Path

import click

from . import __version__
from .errors import HuddError, os_error_message
from .methods import HUDD, METHOD_NAMES

__all__ = ["cli", "main"]


_STORAGE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


class _Group(click.Group):
    """Turns HuddError, and an OSError about a file (disk full, read-only), into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except HuddError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"hudd: error: {exc}", err=True)
            ctx.exit(2)
        except OSError as exc:
            if ctx.params.get("debug") or not (exc.filename or exc.errno in _STORAGE_ERRORS):
                raise
            click.echo(f"hudd: error: {os_error_message(exc)}", err=True)
            ctx.exit(2)
        except KeyboardInterrupt:
            click.echo("hudd: interrupted; finished steps are kept, run the command again to resume", err=True)
            ctx.exit(130)


def _case(path: str) -> Path:
    case = Path(path)
    if not case.is_dir():
        raise HuddError(f"{case}: case folder missing; give a folder holding DataSets/ and DNNModels/ (hudd simulate makes one)")
    return case


def _config_options(*names: str):
    """Add the command-line flags of these config keys (``batch_size`` -> ``--batch-size``)."""
    flags = {
        "device": click.option("--device", default=None, help="auto, cpu or cuda (default: auto)."),
        "batch_size": click.option("--batch-size", "batch_size", type=int, default=None, help="Images per batch."),
        "seed": click.option("--seed", type=int, default=None, help="Random seed (default 0)."),
        "epochs": click.option("--epochs", type=int, default=None, help="Maximum training epochs."),
        "lr": click.option("--lr", type=float, default=None, help="Learning rate."),
        "workspace": click.option("--workspace", default=None, help="Workspace folder (default <case>/HUDD)."),
    }

    return _options(tuple(flags[name] for name in names))


def _options(options: tuple):
    """Apply click options in the order given (the first is listed first in --help)."""
    def decorate(fn):
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _model_options(fn):
    """``--model``, ``--trust-model`` and ``--arch``: which model of DNNModels/ and how to load it."""
    fn = click.option("--arch", default=None, help="Architecture of a bare state_dict model file.")(fn)
    fn = click.option("--trust-model", is_flag=True, help="Allow a fully pickled model: loading it runs code stored in the file.")(fn)
    fn = click.option("--model", "model", default=None, help="Model file in DNNModels/ (default: the only one there).")(fn)
    return fn


_STEP_KEYS = ("device", "batch_size", "workspace")


def _step_options(fn):
    """What every step command takes: the model options, ``--force`` and the device/batch/workspace flags."""
    fn = _config_options(*_STEP_KEYS)(fn)
    fn = click.option("--force", is_flag=True, help="Rerun even if the inputs did not change.")(fn)
    return _model_options(fn)


@contextlib.contextmanager
def _step_context(case: str, command: str, model, trust_model: bool, arch, overrides: dict):
    """Effective config, loaded model and the workspace lock for one step command."""
    from .config import load_config
    from .steps.common import open_context

    config = load_config(_case(case), overrides)
    with open_context(Path(case), config, command=f"hudd {command}", model=model, trust_model=trust_model, arch=arch) as ctx:
        yield ctx


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="hudd")
@click.option("--quiet", is_flag=True, help="No progress bars or informational messages.")
@click.option("--debug", is_flag=True, help="Show the traceback of errors.")
def cli(quiet: bool, debug: bool) -> None:
    """Explain and fix the failures of image DNNs (HUDD)."""
    from .progress import set_quiet

    set_quiet(quiet)


@cli.command()
@click.argument("case", type=click.Path(file_okay=False))
@click.option("--task", type=click.Choice(["gaze", "openness", "landmarks", "signs", "glyphs"]), default="gaze", show_default=True)
@click.option("--train", "n_train", type=int, default=6000, show_default=True, help="TrainingSet images.")
@click.option("--test", "n_test", type=int, default=3000, show_default=True, help="TestSet images.")
@click.option("--improve", "n_improve", type=int, default=3000, show_default=True, help="ImprovementSet images.")
@click.option("--size", type=int, default=None, help="Image side in px (default 64; 128 for landmarks, KPNet's input; 32 for glyphs).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--hazard-rate", type=float, default=0.12, show_default=True, help="Share of test/improvement images with a hazard.")
@click.option("--hazard-rate-train", type=float, default=0.02, show_default=True, help="Share of training images with a hazard.")
@click.option("--force", is_flag=True, help="Replace existing DataSets/ sets.")
def simulate(case, task, n_train, n_test, n_improve, size, seed, hazard_rate, hazard_rate_train, force):
    """Write a simulated case (DataSets/ with params.csv and masks/) into CASE.

    Tasks: eyes (gaze, openness, landmarks), traffic signs (signs, RGB) and handwritten-like
    digits (glyphs); each with injected hazards recorded as the `cause` column."""
    from .sim import SimulationSettings, simulate_case

    settings = SimulationSettings(task=task, n_train=n_train, n_test=n_test, n_improve=n_improve,
                                  size=size or {"landmarks": 128, "glyphs": 32}.get(task, 64), seed=seed,
                                  hazard_rate_train=hazard_rate_train, hazard_rate=hazard_rate)
    written = simulate_case(Path(case), settings, force=force)
    click.echo(f"{'wrote' if written else 'unchanged (same settings)'}: {Path(case) / 'DataSets'} "
               f"({n_train} training, {n_test} test, {n_improve} improvement images, task {task})")


@cli.command()
@click.argument("case")
@click.option("--arch", default=None, help="Architecture (alexnet, alexnet-small, kpnet); default from the images.")
@click.option("--name", default=None, help="Model file name in DNNModels/ (default: the architecture).")
@click.option("--force", is_flag=True, help="Overwrite an existing model file.")
@_config_options("device", "batch_size", "seed", "epochs", "lr")
def train(case, arch, name, force, **kwargs):
    """Train a baseline model on CASE's TrainingSet and save it in DNNModels/."""
    from .baseline import train_baseline
    from .config import load_config
    from .data import Case
    from .text import results_summary

    config = load_config(_case(case), kwargs)
    result = train_baseline(Case(Path(case)), config, arch=arch, name=name, force=force)
    click.echo(f"saved {result.path} (best epoch {result.best_epoch}, validation {result.val_metric:.4f})")
    if result.test_results is not None:
        click.echo(results_summary(result.test_results, result.spec.task))


@cli.command("test")
@click.argument("case")
@_step_options
def test_cmd(case, model, trust_model, arch, force, **kwargs):
    """Step 0: run the model on TrainingSet and TestSet; write trainResult.csv and testResult.csv."""
    from .steps import test as test_step
    from .text import test_summary

    with _step_context(case, "test", model, trust_model, arch, kwargs) as ctx:
        outcome = test_step.run(ctx, force=force)
        click.echo(test_summary(outcome.train, outcome.test, ctx.model.spec.task))


@cli.command()
@click.argument("case")
@click.option("--layers", default=None, help="Comma-separated layer names, or 'all' (default).")
@click.option("--rule", "lrp_rule", default=None, help="LRP rule set: hudd (default) or epsilon-plus-flat.")
@click.option("--target", "lrp_target", default=None, help="Class to explain: predicted (default) or true.")
@click.option("--dtype", "heatmap_dtype", default=None, help="Storage type: float32 (default) or float16.")
@_step_options
def heatmaps(case, model, trust_model, arch, layers, force, **kwargs):
    """Step 1a: LRP heatmaps of every layer for each error-inducing test image (HUDD/Heatmaps/)."""
    from .steps import heatmaps as heatmaps_step
    from .text import format_table

    kwargs["layers"] = () if layers in (None, "all") else layers
    with _step_context(case, "heatmaps", model, trust_model, arch, kwargs) as ctx:
        outcome = heatmaps_step.run(ctx, force=force)
        click.echo(f"heatmaps of {outcome.n_images} error-inducing images in {ctx.workspace.heatmaps_dir}")
        click.echo(format_table(outcome.layers))


_EXPORT_OPTION = click.option("--export", "export", type=click.Choice(["selected", "all"]), default=None,
                              help="Export the selected layer's clusters (default) or every layer's.")
_CLUSTER_OPTIONS = (
    click.option("--k-min", "k_min", type=int, default=None, help="Smallest number of clusters tried (default 2)."),
    click.option("--k-max", "k_max", type=int, default=None, help="Largest number of clusters tried (default 500, at most errors/2)."),
    _EXPORT_OPTION,
)


_METHOD_OPTIONS = (
    click.option("--method", type=click.Choice(METHOD_NAMES), default=HUDD, show_default=True,
                 help="hudd: the joint method's clusters, with the paper's heatmap clusters beside them (the paper's "
                      "method alone without hudd[pretrained]); paper: LRP heatmaps of every layer, Ward, WICD knee, layer of minimal WICD (HUDD as published); "
                      "blackbox: the model's features + UMAP/PCA + DBSCAN/HDBSCAN (SAFE-style); pretrained: ImageNet "
                      "EfficientNet-Lite0 features (hudd[pretrained]) + Ward + WICD knee; naive: the model's features + Ward, "
                      "k = 10; joint: the pretrained features beside the model's logit margins + Ward + WICD knee. "
                      "Feature methods write ClusterAnalysis/<method>/."),
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


@cli.command()
@click.argument("case")
@_options(_CLUSTER_OPTIONS)
@_options(_METHOD_OPTIONS)
@_step_options
@click.option("--activate", is_flag=True, default=False,
              help="Make this method the active one (assign, evaluate and the report use its clusters); without it, a method "
                   "run to compare becomes active only when none is yet.")
def cluster(case, model, trust_model, arch, force, method, extractor, weights, clusterer, reducer, activate, **kwargs):
    """Step 1b: per layer HAC (Ward) + WICD knee, select the best layer, export its clusters (or another --method)."""
    from .pipeline import cluster as cluster_pipeline
    from .text import clustering_summary

    with _step_context(case, "cluster", model, trust_model, arch, kwargs) as ctx:
        clustering = cluster_pipeline(ctx, method, heatmaps=False, force=force, activate_it=activate or None, extractor=extractor,
                                      weights=weights, clusterer=clusterer, reducer=reducer)
        click.echo(clustering_summary(clustering, ctx.workspace, method))


_SELECTION_OPTIONS = (
    click.option("--method", type=click.Choice(METHOD_NAMES), default=None,
                 help="Whose clusters to select for: paper (HUDD's selected layer, by heatmaps) or a feature method run by "
                      "`hudd cluster --method` (in its feature space); default: the active method (the last `hudd cluster` "
                      "or `hudd analyze`), for retrain without --sf/--budget the last assign's."),
    click.option("--sf", type=float, default=None, help="Selection factor of equation 7 (default 0.3)."),
    click.option("--budget", type=int, default=None, help="Label exactly this many images, split like the quotas."),
)
_RETRAIN_OPTIONS = (
    click.option("--epochs", "retrain_epochs", type=int, default=None,
                 help="Passes over the selected images (paired) or epochs over TrainingSet + them (union); default 30."),
    click.option("--mix", "retrain_mix", type=click.Choice(["paired", "union"]), default=None,
                 help="paired (default): each pass the selected images + as many fresh random TrainingSet images; union (the "
                      "paper's): each epoch the whole TrainingSet + the selected images."),
    click.option("--runs", type=int, default=None, help="Repeat every method with this many seeds (default 1; the paper used 10)."),
    click.option("--baselines/--no-baselines", default=None, help="Also train the paper's baselines B1 and B2 (default: yes)."),
    click.option("--seed", type=int, default=None, help="First seed (default 0)."),
    *_SELECTION_OPTIONS,
    click.option("--treatment", type=click.Choice(["none", "doctor"]), default=None,
                 help="Also fine-tune with Model Doctor's constraints: methods doctor and hudd+doctor (default none)."),
    click.option("--spatial", "doctor_spatial", type=click.Choice(["auto", "on", "off"]), default=None,
                 help="Model Doctor's space-wise constraint from DataSets/<Set>/masks/ (default auto: when the TrainingSet has masks)."),
    click.option("--doctor-lambda", "doctor_lambda", type=float, default=None, help="Weight of Model Doctor's constraints (default 1)."),
    click.option("--doctor-draws", "doctor_j_train", type=int, default=None,
                 help="Noise draws per image in the treatment (default 10; 1-2 on a CPU)."),
)
_DOCTOR_OPTIONS = (
    click.option("--layers", "doctor_layers", default=None, help="Comma-separated convolutional layers (default: the last two)."),
    click.option("--per-class", "doctor_t", type=int, default=None, help="Most confident, correct training images per class (T, default 100)."),
    click.option("--draws", "doctor_j", type=int, default=None, help="Noise draws per image (J, default 10)."),
    click.option("--delta", "doctor_delta", type=float, default=None, help="Feature-map noise uniform in [-delta, delta] (default 0.1)."),
    click.option("--v", "doctor_v", type=float, default=None, help="A channel is unrelated to a class below v times its largest (default 0.5)."),
    click.option("--seed", type=int, default=None, help="Seed of the noise (default 0)."),
)


@cli.command()
@click.argument("case")
@_options(_SELECTION_OPTIONS)
@_step_options
def assign(case, model, trust_model, arch, force, budget, method, **kwargs):
    """Step 4: select improvement-set images per root-cause cluster (ranked single linkage, quotas)."""
    from .steps import assign as assign_step
    from .text import format_table

    with _step_context(case, "assign", model, trust_model, arch, kwargs) as ctx:
        outcome = assign_step.run(ctx, method=method, budget=budget, force=force)
        click.echo(format_table(outcome.clusters))
        click.echo(f"unsafe set: {len(outcome.unsafe)} images in {ctx.workspace.unsafe_dir}; "
                   f"label them in {ctx.workspace.labels_csv}")


@cli.command()
@click.argument("case")
@_options(_RETRAIN_OPTIONS)
@_step_options
def retrain(case, model, trust_model, arch, force, budget, method, **kwargs):
    """Steps 4-7: select the unsafe set (hudd assign), stop if it needs labels, fine-tune, compare with B1/B2, report."""
    from .pipeline import retrain as retrain_pipeline
    from .text import retrain_summary

    with _step_context(case, "retrain", model, trust_model, arch, kwargs) as ctx:
        reselect = budget is not None or kwargs.get("sf") is not None
        outcome = retrain_pipeline(ctx, method=method, budget=budget, reselect=reselect, force=force)
        click.echo(retrain_summary(outcome.retrained))
        click.echo(f"retrained model: {ctx.case.models / (ctx.model.path.stem + '-hudd.pt')}; metrics: {ctx.workspace.metrics_csv}")
        click.echo(f"report: {outcome.report}")


@cli.command()
@click.argument("case")
@_options(_CLUSTER_OPTIONS)
@_options(_METHOD_OPTIONS[:1])
@_step_options
def analyze(case, model, trust_model, arch, force, method, **kwargs):
    """Steps 0-2: test, cluster the errors (--method), export and report; finished steps are skipped, a killed run resumes."""
    from .pipeline import analyze as analyze_pipeline
    from .text import clustering_summary, test_summary

    with _step_context(case, "analyze", model, trust_model, arch, kwargs) as ctx:
        outcome = analyze_pipeline(ctx, method=method, force=force)
        click.echo(test_summary(outcome.tested.train, outcome.tested.test, ctx.model.spec.task))
        click.echo(clustering_summary(outcome.clustering, ctx.workspace, method))
        click.echo(f"report: {outcome.report}")


@cli.command()
@click.argument("case")
@click.option("--compare", is_flag=True, help="Also score every clustering present side by side (HUDD/clusterings.csv).")
@_model_options
@_config_options("workspace")
def evaluate(case, model, trust_model, arch, compare, **kwargs):
    """Score the clusters against the simulator's injected causes: purity, coverage, RR (HUDD/evaluation.csv)."""
    from .steps import evaluate as evaluate_step
    from .text import evaluation_summary, format_table

    with _step_context(case, "evaluate", model, trust_model, arch, kwargs) as ctx:
        if compare:
            table = evaluate_step.compare(ctx)
            click.echo(format_table(table.drop(columns=["covered"]), floats="{:.2f}"))
            click.echo(f"written: {ctx.workspace.clusterings_csv}")
        evaluation = evaluate_step.run(ctx)
        click.echo(evaluation_summary(evaluation))
        click.echo(f"written: {ctx.workspace.evaluation_csv}")
        click.echo(evaluation.line())


@cli.command()
@click.argument("case")
@_model_options
@_config_options("workspace")
def report(case, model, trust_model, arch, **kwargs):
    """Write HUDD/report.html from what the workspace holds (any stage)."""
    from .steps import report as report_step

    with _step_context(case, "report", model, trust_model, arch, kwargs) as ctx:
        click.echo(f"report: {report_step.run(ctx)}")


@cli.command()
@click.argument("case")
@_options(_DOCTOR_OPTIONS)
@_step_options
def doctor(case, model, trust_model, arch, force, **kwargs):
    """Model Doctor's diagnosis: per class, the gradient correlation of each channel of the deep conv layers; the channels behind each error."""
    from .steps import doctor as doctor_step

    with _step_context(case, "doctor", model, trust_model, arch, kwargs) as ctx:
        outcome = doctor_step.run(ctx, force=force)
        click.echo(doctor_step.summary(outcome, v=ctx.config.doctor_v, folder=ctx.workspace.doctor_dir))


@cli.command("export")
@click.argument("case")
@_EXPORT_OPTION
@_step_options
def export_cmd(case, model, trust_model, arch, force, **kwargs):
    """Step 2: cluster image folders, GIFs and contact sheets (after hudd cluster)."""
    from .steps import export as export_step

    with _step_context(case, "export", model, trust_model, arch, kwargs) as ctx:
        units = export_step.run(ctx, force=force)
        click.echo("exported: " + ", ".join(str(ctx.workspace.cluster_dir(u)) for u in units))


@cli.command()
@click.argument("case")
@_step_options
def describe(case, model, trust_model, arch, force, **kwargs):
    """Step 2b: say what each cluster's images have in common (HUDD/descriptions.csv, HUDD/findings.csv)."""
    from .steps import describe as describe_step

    with _step_context(case, "describe", model, trust_model, arch, kwargs) as ctx:
        click.echo("\n".join(describe_step.run(ctx, force=force).findings["sentence"]))


@cli.command("config")
@click.argument("case")
@_config_options("device", "batch_size", "seed", "epochs", "lr", "workspace")
def config_cmd(case, **kwargs):
    """Print the effective configuration of CASE (defaults < hudd.toml < flags)."""
    from .config import effective_config

    for key, value, source in effective_config(_case(case), kwargs):
        if isinstance(value, tuple):
            shown = "[" + ", ".join(f'"{v}"' for v in value) + "]"
        elif isinstance(value, bool):
            shown = str(value).lower()
        else:
            shown = f'"{value}"' if isinstance(value, str) else value
        click.echo(f"{key} = {shown}  # {source}")


@cli.command()
@click.argument("directory", default="demo-case", type=click.Path(file_okay=False))
@click.option("--force", is_flag=True, help="Re-simulate and retrain even if the demo case exists.")
@_config_options("device", "seed", "epochs")
def demo(directory, force, **kwargs):
    """Run the whole story on simulated eyes in DIRECTORY (default ./demo-case)."""
    from .config import load_config
    from .demo import run_demo
    from .text import clustering_summary, evaluation_summary, results_summary, retrain_summary

    Path(directory).mkdir(parents=True, exist_ok=True)
    config = load_config(Path(directory), kwargs)
    result = run_demo(Path(directory), config, force=force)
    analysis, retraining = result.analysis, result.retraining
    click.echo(f"demo case: {result.case.root} (model {result.model_path.name}, {'trained now' if result.trained else 'reused'})")
    click.echo(results_summary(result.test_results, "classification"))
    click.echo(clustering_summary(analysis.clustering, result.workspace, analysis.clustering.method))
    unsafe = retraining.unsafe.unsafe
    wrong = int((unsafe["label"] != unsafe["prediction"]).sum()) if (unsafe["label"] != "").all() else None
    click.echo(f"unsafe set: {len(unsafe)} improvement images selected for labelling"
               + (f" ({wrong} of them misclassified by the model)" if wrong is not None else "") + f" in {result.workspace.unsafe_dir}")
    click.echo(retrain_summary(retraining.retrained))
    click.echo(evaluation_summary(result.evaluation))
    click.echo(f"report: {result.report}")
    click.echo(result.evaluation.line())


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="hudd")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
