"""The bad-input matrix, through the real CLI.

Bad input ends with ONE line on stderr, ``hudd: error: <file or flag>: <what>; <what to do>``, exit
status 2 and no traceback, and loses nothing already computed: every artifact in the workspace and
every model file is byte-identical afterwards. Mostly through ``hudd analyze`` (test -> heatmaps ->
cluster -> export -> report) and ``hudd retrain`` (assign -> retrain -> report) on a copy of the
session's analysed case; ``hudd train`` on the bare tiny case. A few edge cases are not errors but
documented graceful results (one error-inducing image, every image wrong).
"""

import contextlib
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import copy_case, one_line_error, run_cli

MODEL = "DNNModels/alexnet-small.pt"
_BOOKKEEPING = {"manifest.json", ".lock", "report.html"}


# ---- fixtures and helpers ------------------------------------------------------------------------

@pytest.fixture
def case(tmp_path: Path, analyzed: Path) -> Path:
    """A copy of the analysed case that a test may break."""
    return copy_case(analyzed, tmp_path)


@pytest.fixture
def bare_case(tmp_path: Path, tiny_case: Path) -> Path:
    """A copy of the tiny case without a model (for ``hudd train``)."""
    return copy_case(tiny_case, tmp_path)


def _artifacts(case: Path) -> dict[str, str]:
    """SHA-256 of every file hudd computed (the workspace, bar its bookkeeping) and of every model file."""
    files = [p for p in (case / "HUDD").rglob("*") if p.is_file() and p.name not in _BOOKKEEPING] \
        if (case / "HUDD").is_dir() else []
    files += sorted((case / "DNNModels").glob("*.pt")) if (case / "DNNModels").is_dir() else []
    return {str(p.relative_to(case)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _assert_intact(before: dict[str, str], case: Path) -> None:
    """Every artifact there before the bad command is still there, byte-identical, and no temporary file is left."""
    after = _artifacts(case)
    lost = sorted(path for path in before if path not in after)
    changed = sorted(path for path in before if path in after and after[path] != before[path])
    assert not lost and not changed, f"lost {lost[:5]}, changed {changed[:5]}"
    assert not [p for p in case.rglob("*.tmp")], "a temporary file is left behind"


def _run_bad(case: Path, command: str, args: tuple, *fragments: str) -> str:
    """Run a command that must fail on bad input; check the one line and that nothing computed is lost."""
    before = _artifacts(case)
    assert before, "the case holds artifacts to protect"
    line = one_line_error(run_cli(command, str(case), *args), *fragments)
    _assert_intact(before, case)
    return line


def _image(case: Path, split: str = "TestSet", label: str = "TopLeft", index: int = 2) -> Path:
    return sorted((case / "DataSets" / split / label).iterdir())[index]


def _remove_empty_class_folders(case: Path) -> None:
    for folder in (case / "DataSets/TestSet").iterdir():
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _trained_module(case: Path) -> torch.nn.Module:
    from hudd.models import load_model

    return load_model(case / MODEL).module


@contextlib.contextmanager
def read_only(folder: Path):
    """Make ``folder`` unwritable for this process: chmod a-w for a normal user; for root, whom chmod does
    not stop, a read-only bind mount of the folder on itself. Skips the test when neither works."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")] if not p.is_symlink()}
        for path, mode in modes.items():
            path.chmod(mode & ~0o222)
        try:
            yield
        finally:
            for path, mode in sorted(modes.items(), key=lambda item: -len(item[0].parts)):
                path.chmod(mode)
        return
    mounted = False
    try:
        subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True, capture_output=True, text=True)
        mounted = True
        subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        if mounted:
            subprocess.run(["umount", str(folder)], check=False)
        detail = getattr(exc, "stderr", None) or exc
        pytest.skip(f"running as root and cannot bind-mount {folder} read-only: {str(detail).strip()}")
    try:
        probe = folder / ".probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip(f"{folder} is still writable after the read-only bind mount")
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# ---- the matrix: break the analysed case, run the command, get one line ---------------------------

@dataclass(frozen=True)
class Bad:
    """One bad input: ``breaks(case)`` damages the copy and returns what the message must name (a path or a
    flag); then ``hudd <command> CASE <args>`` must stop with one line holding it and every fragment."""

    id: str
    breaks: Callable[[Path], str]
    command: str
    fragments: tuple
    args: tuple = ()


def _missing_datasets(case: Path) -> str:
    shutil.rmtree(case / "DataSets")
    return f"{case / 'DataSets'}: folder missing"


def _missing_test_set(case: Path) -> str:
    shutil.rmtree(case / "DataSets/TestSet")
    return f"{case / 'DataSets/TestSet'}: folder missing"


def _empty_test_set(case: Path) -> str:
    for folder in (case / "DataSets/TestSet").iterdir():
        if folder.is_dir():
            shutil.rmtree(folder)
    return str(case / "DataSets/TestSet")


def _missing_folder(case: Path, relative: str) -> str:
    shutil.rmtree(case / relative)
    return str(case / relative)


def _new_empty_class_folder(case: Path) -> str:
    (case / "DataSets/TrainingSet/Sideways").mkdir()
    return str(case / "DataSets/TrainingSet/Sideways")


def _empty_class_folder(case: Path) -> str:
    for image in (case / "DataSets/TestSet/TopLeft").iterdir():
        image.unlink()
    return str(case / "DataSets/TestSet/TopLeft")


def _unknown_class(case: Path) -> str:
    shutil.copytree(case / "DataSets/TestSet/TopLeft", case / "DataSets/TestSet/Upwards")
    return str(case / "DataSets/TestSet/Upwards")


def _corrupt_png(case: Path, split: str = "TestSet") -> str:
    victim = _image(case, split)
    victim.write_bytes(victim.read_bytes()[:60])
    return str(victim)


def _text_named_png(case: Path, split: str = "TestSet") -> str:
    fake = case / "DataSets" / split / "TopLeft/zzz.png"
    fake.write_text("not really a png")
    return str(fake)


def _non_image_file(case: Path, split: str = "TestSet") -> str:
    notes = case / "DataSets" / split / "TopLeft/notes.txt"
    notes.write_text("labels checked by Ann")
    return str(notes)


def _file_outside_class_folder(case: Path) -> str:
    stray = case / "DataSets/TestSet/readme.txt"
    stray.write_text("test images of May")
    return str(stray)


def _write_image(case: Path, pixels: np.ndarray, split: str = "TestSet") -> str:
    odd = case / "DataSets" / split / "TopLeft/zzz.png"
    iio.imwrite(odd, pixels)
    return str(odd)


def _bare_state_dict(case: Path) -> str:
    payload = torch.load(case / MODEL, weights_only=True)
    torch.save(payload["state_dict"], case / MODEL)
    return str(case / MODEL)


def _unknown_arch(case: Path) -> str:
    _bare_state_dict(case)
    return "--arch resnet9"


def _state_dict_of_a_5_class_model(case: Path) -> str:
    from hudd.models.registry import get_model

    torch.save(get_model("alexnet-small", in_channels=1, num_classes=5, image_size=32).state_dict(), case / MODEL)
    return str(case / MODEL)


def _checkpoint_for_64px(case: Path) -> str:
    payload = torch.load(case / MODEL, weights_only=True)
    spec = payload["spec"]
    payload["spec"] = {**spec, "height": 64, "width": 64, "arch_kwargs": {**spec["arch_kwargs"], "image_size": 64}}
    torch.save(payload, case / MODEL)
    return str(case / "DataSets/TrainingSet/")


def _pickled_module(case: Path) -> str:
    torch.save(_trained_module(case), case / MODEL)
    return str(case / MODEL)


def _pickled_module_of(case: Path, **kwargs) -> str:
    from hudd.models.registry import get_model

    torch.save(get_model("alexnet-small", **{"in_channels": 1, "num_classes": 8, "image_size": 32, **kwargs}), case / MODEL)
    return str(case / MODEL)


def _pickled_model_for_64px(case: Path) -> str:
    torch.save(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64 * 64, 8)), case / MODEL)
    return str(case / MODEL)


def _truncated_checkpoint(case: Path) -> str:
    data = (case / MODEL).read_bytes()
    (case / MODEL).write_bytes(data[: len(data) // 2])
    return str(case / MODEL)


def _second_model(case: Path) -> str:
    shutil.copy(case / MODEL, case / "DNNModels/other.pt")
    return str(case / "DNNModels")


def _labels(case: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> str:
    path = case / "HUDD/UnsafeSet/labels.csv"
    edit(pd.read_csv(path, keep_default_na=False, dtype=str)).to_csv(path, index=False)
    return str(path)


def _set(table: pd.DataFrame, row: int, label: str) -> pd.DataFrame:
    table.loc[row, "label"] = label
    return table


def _extra_row(table: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([table, pd.DataFrame({"image": ["ImprovementSet/TopLeft/999999.png"], "cluster": ["C1"], "label": ["TopLeft"]})])


_RETRAIN = ("--retrain-epochs", "1", "--runs", "1")

MATRIX = [
    # data sets, through hudd analyze (the test step reads them)
    Bad("missing-DataSets", _missing_datasets, "analyze", ("TrainingSet/, TestSet/",)),
    Bad("missing-TestSet", _missing_test_set, "analyze", ("create it with the TestSet images",)),
    Bad("empty-TestSet", _empty_test_set, "analyze", ("no class folders", "one folder per class")),
    Bad("empty-class-folder", _empty_class_folder, "analyze", ("class folder has no images", "add images or remove the folder")),
    Bad("class-unknown-to-the-model", _unknown_class, "analyze", ("unknown to alexnet-small.pt", "rename or remove the folder")),
    Bad("corrupt-png", _corrupt_png, "analyze", ("cannot read image", "remove it or re-export it")),
    Bad("text-file-named-png", _text_named_png, "analyze", ("cannot read image", "remove it or re-export it")),
    Bad("non-image-file", _non_image_file, "analyze", ("not an image", "move it out of the data set")),
    Bad("file-outside-a-class-folder", _file_outside_class_folder, "analyze", ("file outside a class folder",)),
    Bad("wrong-image-size", lambda c: _write_image(c, np.zeros((48, 48), np.uint8)).rsplit("/TopLeft/", 1)[0], "analyze",
        ("1 of 65 images are not 32x32, the input size of alexnet-small.pt", "TestSet/TopLeft/zzz.png is 48x48", "set resize")),
    Bad("corrupt-improvement-image", lambda c: _corrupt_png(c, "ImprovementSet"), "assign", ("cannot read image",)),
    # models, through hudd analyze (loaded before anything runs)
    Bad("state-dict-with-arch-for-larger-images", _bare_state_dict, "analyze",
        ("architecture alexnet cannot take 32x32 grayscale", "check --arch"), ("--arch", "alexnet")),
    Bad("state-dict-with-keypoint-arch", _bare_state_dict, "analyze",
        ("architecture kpnet cannot take 32x32 grayscale classification images", "check --arch"), ("--arch", "kpnet")),
    Bad("state-dict-of-a-5-class-model", _state_dict_of_a_5_class_model, "analyze",
        ("weights do not fit architecture alexnet-small", "check --arch and the data set"), ("--arch", "alexnet-small")),
    Bad("state-dict-without-arch", _bare_state_dict, "analyze", ("is a state_dict", "name its architecture with --arch", "resnet18")),
    Bad("unknown-arch", _unknown_arch, "analyze",
        ("unknown architecture 'resnet9'", "hudd's alexnet, alexnet-small, kpnet", "torchvision's", "resnet18"), ("--arch", "resnet9")),
    Bad("checkpoint-for-64px-images", _checkpoint_for_64px, "analyze",
        ("images are not 64x64, the input size of alexnet-small.pt", "set resize")),
    Bad("pickled-model-without-trust-model", _pickled_module, "analyze", ("fully pickled model", "pass --trust-model")),
    Bad("trusted-pickled-model-for-64px", _pickled_model_for_64px, "analyze",
        ("does not take the data set's 32x32 grayscale images", "use the model made for this data"), ("--trust-model",)),
    Bad("trusted-pickled-model-with-5-classes", lambda c: _pickled_module_of(c, num_classes=5), "analyze",
        ("gives 5 outputs per image, the data set has 8 classes", "use the model made for this data"), ("--trust-model",)),
    Bad("truncated-checkpoint", _truncated_checkpoint, "analyze", ("cannot read as a PyTorch model", "check the file")),
    Bad("two-models-no-model-flag", _second_model, "analyze", ("several models", "choose one with --model NAME")),
    Bad("model-flag-names-no-file", lambda c: str(c / "DNNModels/nope"), "analyze", ("no such model file",), ("--model", "nope")),
    # labels.csv, through hudd retrain after analyze + assign
    Bad("labels-missing-rows", lambda c: _labels(c, lambda t: t.iloc[2:]), "retrain",
        ("2 unsafe images have no row", "add them with their label"), _RETRAIN),
    Bad("labels-extra-row", lambda c: _labels(c, _extra_row), "retrain",
        ("are not (or again) images of the unsafe set", "remove them"), _RETRAIN),
    Bad("labels-duplicate-row", lambda c: _labels(c, lambda t: pd.concat([t, t.iloc[:1]])), "retrain",
        ("are not (or again) images of the unsafe set", "remove them"), _RETRAIN),
    Bad("labels-unknown-label", lambda c: _labels(c, lambda t: _set(t, 3, "Upwards")), "retrain",
        ("rows 5 have a label the model does not know ('Upwards')", "use one of BottomCenter"), _RETRAIN),
    Bad("labels-blank-label", lambda c: _labels(c, lambda t: _set(t, 1, "")), "retrain",
        ("rows 3 have no label", "fill in one of BottomCenter"), _RETRAIN),
    Bad("labels-all-blank", lambda c: _labels(c, lambda t: t.assign(label="")), "retrain",
        ("selected images have no label yet", "label them", "run `hudd retrain"), _RETRAIN),
    # selection settings
    Bad("assign-budget-0", lambda c: "--budget 0", "assign", ("selects no image", "give a positive number"), ("--budget", "0")),
    Bad("retrain-budget-0", lambda c: "--budget 0", "retrain", ("selects no image", "give a positive number"), ("--budget", "0", *_RETRAIN)),
    Bad("assign-sf-0", lambda c: "sf == 0.0", "assign", ("quota rounds to 0", "raise --sf or give --budget"), ("--sf", "0")),
]


@pytest.mark.parametrize("bad", MATRIX, ids=[bad.id for bad in MATRIX])
def test_bad_input_is_one_line_exit_2_and_loses_nothing(case: Path, bad: Bad):
    named = bad.breaks(case)
    _run_bad(case, bad.command, bad.args, named, *bad.fragments)


# ---- the workspace: read-only, busy -------------------------------------------------------------

@pytest.mark.parametrize("command, args", [("analyze", ()), ("assign", ()), ("retrain", _RETRAIN)], ids=["analyze", "assign", "retrain"])
def test_read_only_workspace(case: Path, command: str, args: tuple):
    workspace = case / "HUDD"
    before = _artifacts(case)
    with read_only(workspace):
        result = run_cli(command, str(case), *args)
    one_line_error(result, f"{workspace}: cannot write to the workspace", "make it writable or choose another --workspace")
    _assert_intact(before, case)


def test_read_only_model_folder_names_the_model_retrain_writes(case: Path):
    before = _artifacts(case)
    with read_only(case / "DNNModels"):
        result = run_cli("retrain", str(case), *_RETRAIN, "--no-baselines")
    line = one_line_error(result, str(case / "DNNModels/alexnet-small-hudd.pt"), "run the command again")
    assert "fix its permissions" in line or "make it writable" in line
    assert ".tmp" not in line, "the message names the model file, not a temporary one"
    _assert_intact(before, case)


@pytest.mark.parametrize("command, args", [("analyze", ()), ("retrain", _RETRAIN)], ids=["analyze", "retrain"])
def test_second_run_on_a_busy_workspace(case: Path, command: str, args: tuple):
    from hudd.workspace.workspace import Workspace

    before = _artifacts(case)
    with Workspace(case / "HUDD").locked("test holder"):
        result = run_cli(command, str(case), *args)
    one_line_error(result, f"{case / 'HUDD'}: workspace is in use by pid {os.getpid()}", "test holder", "wait for it to finish")
    _assert_intact(before, case)


# ---- edge cases of the test results: nothing to analyse, one error, every image wrong -----------

def _test_results(case: Path) -> pd.DataFrame:
    return pd.read_csv(case / "HUDD/testResult.csv")


def test_no_error_inducing_image_is_nothing_to_analyse_and_keeps_the_test_results(case: Path):
    results = _test_results(case)
    for image in results.loc[~results["correct"], "image"]:
        (case / "DataSets" / image).unlink()
    _remove_empty_class_folders(case)
    kept = {path: digest for path, digest in _artifacts(case).items() if path != "HUDD/testResult.csv"}

    result = run_cli("analyze", str(case))
    one_line_error(result, str(case / "HUDD/testResult.csv"), "makes no error", "nothing to analyse")
    results = _test_results(case)
    assert len(results) and results["correct"].all(), "testResult.csv of the new test run is kept"
    _assert_intact(kept, case)


def test_exactly_one_error_inducing_image_gives_one_cluster(case: Path):
    results = _test_results(case)
    wrong = results.loc[~results["correct"], "image"].tolist()
    for image in wrong[1:]:
        (case / "DataSets" / image).unlink()
    _remove_empty_class_folders(case)

    result = run_cli("analyze", str(case))
    assert result.exit_code == 0, result.output
    assert (~_test_results(case)["correct"]).sum() == 1
    clusters = pd.read_csv(case / "HUDD/ClusterAnalysis/paper/clusters.csv")
    assert clusters["image"].tolist() == [wrong[0]] and clusters["cluster"].tolist() == ["C1"]
    summary = pd.read_csv(case / "HUDD/summary.csv")
    assert (summary["k"] == 1).all() and (summary["knee_method"] == "single-image").all()
    assert (case / "HUDD/report.html").is_file()
    # one error gives a quota of 0 at the default sf: a clear line, and --budget gets an image to label
    _run_bad(case, "assign", (), "sf == 0.3", "quota rounds to 0", "give --budget")
    result = run_cli("assign", str(case), "--budget", "1")
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(case / "HUDD/UnsafeSet/labels.csv")) == 1


def test_every_image_wrong_is_analysed(case: Path):
    results = _test_results(case)
    classes = sorted(p.name for p in (case / "DataSets/TestSet").iterdir() if p.is_dir())
    for image, label, prediction in zip(results["image"], results["label"], results["prediction"]):
        if label == prediction:  # move it into the folder of a class the model does not predict
            target = case / "DataSets/TestSet" / next(c for c in classes if c != prediction) / f"moved-{Path(image).name}"
            (case / "DataSets" / image).rename(target)
    _remove_empty_class_folders(case)

    result = run_cli("analyze", str(case))
    assert result.exit_code == 0, result.output
    results = _test_results(case)
    assert len(results) == 64 and not results["correct"].any()
    assert sorted(pd.read_csv(case / "HUDD/ClusterAnalysis/paper/clusters.csv")["image"]) == sorted(results["image"])
    assert (case / "HUDD/report.html").is_file()


# ---- hudd train on the bare case --------------------------------------------------------------

TRAIN = [
    Bad("missing-TrainingSet", lambda c: _missing_folder(c, "DataSets/TrainingSet"), "train", ("folder missing",)),
    Bad("missing-case-folder", lambda c: _missing_folder(c, "."), "train", ("case folder missing",)),
    Bad("empty-class-folder", _new_empty_class_folder, "train", ("has no images",)),
    Bad("corrupt-image", lambda c: _corrupt_png(c, "TrainingSet"), "train", ("cannot read image",), ("--epochs", "1")),
    Bad("non-image-file", lambda c: _non_image_file(c, "TrainingSet"), "train", ("not an image",)),
    Bad("text-file-named-png", lambda c: _text_named_png(c, "TrainingSet"), "train", ("cannot read image",), ("--epochs", "1")),
    Bad("wrong-image-size", lambda c: _write_image(c, np.zeros((48, 48), np.uint8), "TrainingSet").rsplit("/TopLeft/", 1)[0], "train",
        ("1 of 161 images are not 32x32", "TrainingSet/TopLeft/zzz.png is 48x48", "set resize"), ("--epochs", "1")),
    Bad("unknown-arch", lambda c: "--arch resnet9", "train", ("unknown architecture 'resnet9'", "alexnet-small", "resnet18"),
        ("--arch", "resnet9")),
    Bad("class-unknown-to-the-model-in-TestSet", _unknown_class, "train", ("unknown to the model",)),
]


@pytest.mark.parametrize("bad", TRAIN, ids=[bad.id for bad in TRAIN])
def test_train_bad_input(bare_case: Path, bad: Bad):
    named = bad.breaks(bare_case)
    one_line_error(run_cli(bad.command, str(bare_case), *bad.args), named, *bad.fragments)
    assert not (bare_case / MODEL).exists(), "stops before a model is saved"


def test_train_converts_an_image_of_another_mode_and_counts_it(bare_case: Path):
    for split in ("TrainingSet", "TestSet"):
        iio.imwrite(bare_case / "DataSets" / split / "TopLeft/zzz.png", np.zeros((32, 32, 3), np.uint8))
    result = run_cli("train", str(bare_case), "--epochs", "1")
    assert result.exit_code == 0, result.output
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == ["note: 1 of 65 TestSet images converted to grayscale", "note: 1 of 161 TrainingSet images converted to grayscale"]


def test_debug_shows_the_traceback(bare_case: Path):
    from click.testing import CliRunner

    from hudd.cli import cli
    from hudd.core.errors import HuddError

    result = CliRunner().invoke(cli, ["--debug", "train", str(bare_case), "--arch", "resnet9"])
    assert isinstance(result.exception, HuddError)
