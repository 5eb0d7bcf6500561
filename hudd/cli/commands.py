"""The ``hudd`` command line: click commands that parse, call one function, and print. No logic here.

A :class:`hudd.core.errors.HuddError` from any command becomes ``hudd: error: <message>`` on stderr and
exit status 2 (with the traceback only under ``--debug``).

Fast answers: this module imports click and light modules only (the option groups are in
:mod:`hudd.cli.options`); each command checks its CASE and config first and imports its
implementation (torch, seconds) after, so ``--help`` and bad input answer at once.
"""

from __future__ import annotations

import contextlib
import errno
from pathlib import Path

import click

from .. import __version__
from .options import (ARCH_HELP, CLUSTER_OPTIONS, DOCTOR_OPTIONS, EXPORT_OPTION, INPUT_KEYS, METHOD_OPTIONS, RETRAIN_OPTIONS,
                      SELECTION_OPTIONS, config_options, model_options, options, step_options)
from .next_step import carry_flags
from .next_step import next_line as _next
from ..config import CONFIG_KEYS, Config, effective_config, load_config
from ..case.layout import require_datasets
from ..core.distributed import WorkerDone, world_size
from ..core.errors import HuddError, os_error_message

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
        except WorkerDone:  # a rank other than 0 under torchrun: rank 0 has finished the command and speaks for it
            ctx.exit(0)
        except KeyboardInterrupt:
            click.echo("hudd: interrupted; finished steps are kept, run the command again to resume", err=True)
            ctx.exit(130)


def _case(path: str) -> Path:
    case = Path(path)
    if not case.is_dir():
        raise HuddError(f"{case}: case folder missing; give a folder holding DataSets/ and DNNModels/ (hudd simulate makes one)")
    return case


def _config(case: str, overrides: dict) -> Config:
    """The effective config of CASE; a missing folder or a bad value is a HuddError before anything heavy is imported."""
    config = load_config(_case(case), overrides)
    require_datasets(Path(case))
    return config


def _alone(command: str) -> None:
    """A HuddError under torchrun for a command that runs as one process (every process would write the same files)."""
    if world_size() > 1:
        raise HuddError(f"hudd {command}: runs as one process; run it without torchrun (the commands that analyse a case run under it)")


@contextlib.contextmanager
def _step_context(case: str, config: Config, command: str, model, trust_model: bool, arch):
    """Loaded model and the workspace lock for one step command (imports torch)."""
    from ..steps.common import open_context

    carry_flags(config, model, arch, trust_model)
    with open_context(Path(case), config, command=f"hudd {command}", model=model, trust_model=trust_model, arch=arch) as ctx:
        yield ctx


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="hudd")
@click.option("--quiet", is_flag=True, help="No progress bars or informational messages.")
@click.option("--debug", is_flag=True, help="Show the traceback of errors.")
def cli(quiet: bool, debug: bool) -> None:
    """Explain and fix the failures of image DNNs (HUDD)."""
    from ..core.progress import set_quiet

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
    _alone("simulate")
    from ..sim import SimulationSettings, simulate_case

    settings = SimulationSettings(task=task, n_train=n_train, n_test=n_test, n_improve=n_improve,
                                  size=size or {"landmarks": 128, "glyphs": 32}.get(task, 64), seed=seed,
                                  hazard_rate_train=hazard_rate_train, hazard_rate=hazard_rate)
    written = simulate_case(Path(case), settings, force=force)
    click.echo(f"{'wrote' if written else 'unchanged (same settings)'}: {Path(case) / 'DataSets'} "
               f"({n_train} training, {n_test} test, {n_improve} improvement images, task {task})")
    _next("train a model on it, or copy yours into DNNModels/", "train", case)


@cli.command()
@click.argument("case")
@click.option("--arch", default=None, help=ARCH_HELP + " Default: kpnet for keypoints, alexnet-small up to 128 px, alexnet above.")
@click.option("--name", default=None, help="Model file name in DNNModels/ (default: the architecture).")
@click.option("--force", is_flag=True, help="Overwrite an existing model file.")
@config_options("device", "precision", "batch_size", "seed", "epochs", "lr", *INPUT_KEYS)
def train(case, arch, name, force, **kwargs):
    """Train a baseline model on CASE's TrainingSet and save it in DNNModels/."""
    _alone("train")
    config = _config(case, kwargs)
    from ..models.train import train_baseline
    from ..case.data import Case
    from .summaries import results_summary

    result = train_baseline(Case(Path(case)), config, arch=arch, name=name, force=force)
    click.echo(f"saved {result.path} (best epoch {result.best_epoch}, validation {result.val_metric:.4f})")
    if result.test_results is not None:
        click.echo(results_summary(result.test_results, result.spec.task, error_px=config.error_px))
    _next("find and explain its errors", "analyze", case, "--model", result.path.name)


@cli.command("test")
@click.argument("case")
@step_options
def test_cmd(case, model, trust_model, arch, force, **kwargs):
    """Step 0: run the model on TrainingSet and TestSet; write trainResult.csv and testResult.csv."""
    config = _config(case, kwargs)
    from ..steps import test as test_step
    from ..core.progress import note
    from .summaries import test_summary

    with _step_context(case, config, "test", model, trust_model, arch) as ctx:
        outcome = test_step.run(ctx, force=force)
        click.echo(test_summary(outcome.train, outcome.test, ctx.model.spec.task, error_px=ctx.config.error_px))
        if outcome.weak and not config.allow_weak_model:
            note(outcome.weak)
        _next("", "heatmaps", case)


@cli.command()
@click.argument("case")
@config_options("layers", "lrp_rule", "lrp_target", "heatmap_dtype")
@step_options
def heatmaps(case, model, trust_model, arch, force, **kwargs):
    """Step 1a: LRP heatmaps of every layer for each error-inducing test image (HUDD/Heatmaps/)."""
    if kwargs["layers"] == "all":
        kwargs["layers"] = ()
    config = _config(case, kwargs)
    from ..steps import heatmaps as heatmaps_step
    from ..core.text import format_table

    with _step_context(case, config, "heatmaps", model, trust_model, arch) as ctx:
        outcome = heatmaps_step.run(ctx, force=force)
        click.echo(f"heatmaps of {outcome.n_images} error-inducing images in {ctx.workspace.heatmaps_dir}")
        click.echo(format_table(outcome.layers))
        _next("", "cluster", case)


@cli.command()
@click.argument("case")
@options(CLUSTER_OPTIONS)
@options(METHOD_OPTIONS)
@step_options
@click.option("--activate", is_flag=True, default=False,
              help="Make this method the active one (assign, evaluate and the report use its clusters); without it, a method "
                   "run to compare becomes active only when none is yet.")
def cluster(case, model, trust_model, arch, force, method, activate, **kwargs):
    """Step 1b: per layer HAC (Ward) + WICD knee, select the best layer, export its clusters (or another --method)."""
    config = _config(case, kwargs)
    from ..pipeline import cluster as cluster_pipeline
    from .summaries import clustering_summary

    with _step_context(case, config, "cluster", model, trust_model, arch) as ctx:
        clustering = cluster_pipeline(ctx, method, heatmaps=False, force=force, activate_it=activate or None)
        click.echo(clustering_summary(clustering, ctx.workspace, method))
        _next("", "describe", case)


@cli.command()
@click.argument("case")
@options(SELECTION_OPTIONS)
@step_options
def assign(case, model, trust_model, arch, force, budget, method, **kwargs):
    """Step 4: select improvement-set images per root-cause cluster (ranked single linkage, quotas)."""
    config = _config(case, kwargs)
    from ..steps import assign as assign_step
    from ..core.text import format_table

    with _step_context(case, config, "assign", model, trust_model, arch) as ctx:
        outcome = assign_step.run(ctx, method=method, budget=budget, force=force)
        click.echo(format_table(outcome.clusters))
        click.echo(f"unsafe set: {len(outcome.unsafe)} images in {ctx.workspace.unsafe_dir}; "
                   f"label them in {ctx.workspace.labels_csv}")
        _next(f"fill the label column of {ctx.workspace.labels_csv}, then retrain", "retrain", case)


@cli.command()
@click.argument("case")
@options(RETRAIN_OPTIONS)
@step_options
def retrain(case, model, trust_model, arch, force, budget, method, **kwargs):
    """Steps 4-7: select the unsafe set (hudd assign), stop if it needs labels, fine-tune, compare with B1/B2, report."""
    config = _config(case, kwargs)
    from ..pipeline import retrain as retrain_pipeline
    from .summaries import retrain_summary

    with _step_context(case, config, "retrain", model, trust_model, arch) as ctx:
        reselect = budget is not None or kwargs.get("sf") is not None
        outcome = retrain_pipeline(ctx, method=method, budget=budget, reselect=reselect, force=force)
        click.echo(retrain_summary(outcome.retrained))
        retrained = ctx.model.path.stem + "-hudd.pt"
        click.echo(f"retrained model: {ctx.case.models / retrained}; metrics: {ctx.workspace.metrics_csv}")
        click.echo(f"report: {outcome.report}")
        _next("see which errors the retrained model still makes, in a workspace of its own", "analyze", case,
              "--model", retrained, "--workspace", str(Path(case) / "HUDD-retrained"), *(["--trust-model"] if ctx.model.pickled else []),
              carry=False)


@cli.command()
@click.argument("case")
@options(CLUSTER_OPTIONS)
@options(METHOD_OPTIONS)
@step_options
def analyze(case, model, trust_model, arch, force, method, **kwargs):
    """Steps 0-2: test, cluster the errors (--method), export and report; finished steps are skipped, a killed run resumes."""
    config = _config(case, kwargs)
    from ..pipeline import analyze as analyze_pipeline
    from .summaries import clustering_summary, test_summary

    with _step_context(case, config, "analyze", model, trust_model, arch) as ctx:
        outcome = analyze_pipeline(ctx, method=method, force=force)
        click.echo(test_summary(outcome.tested.train, outcome.tested.test, ctx.model.spec.task, error_px=ctx.config.error_px))
        click.echo(clustering_summary(outcome.clustering, ctx.workspace, method))
        click.echo(f"report: {outcome.report}")
        _next("read the report, then select improvement images to label for its clusters", "assign", case)


@cli.command()
@click.argument("case")
@click.option("--compare", is_flag=True, help="Also score every clustering present side by side (HUDD/clusterings.csv).")
@model_options
@config_options("workspace")
def evaluate(case, model, trust_model, arch, compare, **kwargs):
    """Score the clusters against the simulator's injected causes: purity, coverage, RR (HUDD/evaluation.csv)."""
    config = _config(case, kwargs)
    from ..steps import evaluate as evaluate_step
    from ..core.text import format_table
    from .summaries import evaluation_summary

    with _step_context(case, config, "evaluate", model, trust_model, arch) as ctx:
        if compare:
            table = evaluate_step.compare(ctx)
            click.echo(format_table(table.drop(columns=["covered"]), floats="{:.2f}"))
            click.echo(f"written: {ctx.workspace.clusterings_csv}")
        evaluation = evaluate_step.run(ctx)
        click.echo(evaluation_summary(evaluation))
        click.echo(f"written: {ctx.workspace.evaluation_csv}")
        _next("see the scores beside the clusters", "report", case)
        click.echo(evaluation.line())


@cli.command()
@click.argument("case")
@model_options
@config_options("workspace")
def report(case, model, trust_model, arch, **kwargs):
    """Write HUDD/report.html from what the workspace holds (any stage)."""
    config = _config(case, kwargs)
    from ..steps import report as report_step

    with _step_context(case, config, "report", model, trust_model, arch) as ctx:
        path = report_step.run(ctx)
        click.echo(f"report: {path}")
        _next(f"open {path} in a browser")


@cli.command()
@click.argument("case")
@options(DOCTOR_OPTIONS)
@step_options
def doctor(case, model, trust_model, arch, force, **kwargs):
    """Model Doctor's diagnosis: per class, the gradient correlation of each channel of the deep conv layers; the channels behind each error."""
    config = _config(case, kwargs)
    from ..steps import doctor as doctor_step

    with _step_context(case, config, "doctor", model, trust_model, arch) as ctx:
        outcome = doctor_step.run(ctx, force=force)
        click.echo(doctor_step.summary(outcome, v=ctx.config.doctor_v, folder=ctx.workspace.doctor_dir))
        _next("fine-tune with Model Doctor's constraints", "retrain", case, "--treatment", "doctor")


@cli.command("export")
@click.argument("case")
@EXPORT_OPTION
@step_options
def export_cmd(case, model, trust_model, arch, force, **kwargs):
    """Step 2: cluster image folders, GIFs and contact sheets (after hudd cluster)."""
    config = _config(case, kwargs)
    from ..steps import export as export_step

    with _step_context(case, config, "export", model, trust_model, arch) as ctx:
        units = export_step.run(ctx, force=force)
        click.echo("exported: " + ", ".join(str(ctx.workspace.cluster_dir(u)) for u in units))
        _next("", "describe", case)


@cli.command()
@click.argument("case")
@step_options
def describe(case, model, trust_model, arch, force, **kwargs):
    """Step 2b: say what each cluster's images have in common (HUDD/descriptions.csv, HUDD/findings.csv)."""
    config = _config(case, kwargs)
    from ..steps import describe as describe_step

    with _step_context(case, config, "describe", model, trust_model, arch) as ctx:
        click.echo("\n".join(describe_step.run(ctx, force=force).findings["sentence"]))
        _next("", "report", case)


@cli.command("config")
@click.argument("case")
@config_options(*CONFIG_KEYS)
def config_cmd(case, **kwargs):
    """Print the effective configuration of CASE (defaults < hudd.toml < flags)."""
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
@config_options("device", "precision", "seed", "epochs")
def demo(directory, force, **kwargs):
    """Run the whole story on simulated eyes in DIRECTORY (default ./demo-case)."""
    _alone("demo")
    Path(directory).mkdir(parents=True, exist_ok=True)
    config = load_config(Path(directory), kwargs)
    from ..demo import run_demo
    from .summaries import clustering_summary, evaluation_summary, results_summary, retrain_summary

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
    _next(f"open {result.report} in a browser; then run the same on your own case (README: your own case)")
    click.echo(result.evaluation.line())


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="hudd")
