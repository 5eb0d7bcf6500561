"""Fuzzing every file hudd reads, through the real CLI.

Each case damages one file of a copy of an analysed case (truncated, empty, wrong type, wrong
encoding, wrong shape, ...) and runs the one command that reads it. Bad input must end as in
``test_bad_input``: exit status 2, exactly one ``hudd: error: `` line on stderr naming the damaged
file, no traceback, and every artifact (the workspace bar its bookkeeping, and the model files)
byte-identical afterwards. A few damaged files are not errors: the output of a step that reruns
anyway is recomputed, a 16-bit image is read (images of other modes are converted: test_own_model.py), and the report shows a damaged table as a problem.

Also here: bookkeeping that names paths outside the workspace must never make hudd delete them,
a ``--workspace`` inside ``DataSets/`` or ``DNNModels/`` is refused, and a full disk (a small
tmpfs, run in a subprocess) is one line naming the file, never a SIGBUS.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import traceback
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import copy_case, one_line_error, run_cli
from tests.test_bad_input import MODEL, _artifacts, _assert_intact, case  # noqa: F401 (a fixture)

REPO = Path(__file__).resolve().parents[1]

Damage = Callable[[Path], None]


# ---- checking a result ---------------------------------------------------------------------------

def _raised_at(tb) -> str:
    """``hudd/<module>.py:<line>`` of the innermost frame of hudd's code in a traceback."""
    marker = f"{os.sep}hudd{os.sep}"
    frames = [frame for frame in traceback.extract_tb(tb) if marker in frame.filename]
    if not frames:
        return "?"
    return f"{frames[-1].filename[frames[-1].filename.rindex(marker) + 1:]}:{frames[-1].lineno}"


def _what_happened(result) -> str:
    """Exit status, first and last stderr lines and, for an exception, its type and the hudd line that raised it."""
    lines = result.stderr.strip().splitlines()
    text = f"exit {result.exit_code}; stderr " + (f"{lines[0]!r} ... {lines[-1]!r}" if lines else "empty")
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        message = str(exc).splitlines()[0][:200] if str(exc) else ""
        text += f"; {type(exc).__name__}: {message} (raised at {_raised_at(result.exc_info[2])})"
    return text


def _expect_error(result, names: tuple) -> str:
    """Exit 2, one ``hudd: error:`` line holding one of ``names`` (what it must name), no traceback."""
    assert result.exit_code == 2, _what_happened(result)
    line = one_line_error(result)
    assert any(name in line for name in names), f"the line names none of {names}: {line}"
    return line


@contextlib.contextmanager
def _terminal_warnings():
    """Record the warnings a user's terminal would show under Python's default filters: each is one more line on
    stderr, which CliRunner does not capture."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.resetwarnings()
        warnings.simplefilter("default")
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", category)
        yield shown


def _tree(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- damages: each takes the path of the file to break -----------------------------------------

def _bytes(data: bytes) -> Damage:
    """Replace the file's content with ``data``."""
    return lambda path: path.write_bytes(data)


def _cut(fraction: float) -> Damage:
    """Keep the first ``fraction`` of the file."""
    def damage(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * fraction)])
    return damage


def _directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _header_only(path: Path) -> None:
    path.write_bytes(path.read_bytes().partition(b"\n")[0] + b"\n")


def _mid_row(path: Path) -> None:
    """Cut the file in the middle of its last row."""
    data = path.read_bytes().rstrip(b"\n")
    start = data.rfind(b"\n") + 1
    path.write_bytes(data[: start + max(1, (len(data) - start) // 2)])


def _latin1(path: Path) -> None:
    """A Latin-1 byte (é) at the start of the first row, as a legacy spreadsheet would save it."""
    header, _, rows = path.read_bytes().partition(b"\n")
    path.write_bytes(header + b"\n" + b"\xe9" + rows)


def _utf16(path: Path) -> None:
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))


def _nul_bytes(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\x00" * 16 + data[len(data) // 2:])


def _table(edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Damage:
    """Edit the CSV as a table of strings and write it back."""
    def damage(path: Path) -> None:
        edit(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)
    return damage


def _column(column: str, value: str) -> Damage:
    """Every value of ``column`` replaced by ``value`` (of the wrong type)."""
    return _table(lambda table: table.assign(**{column: value}))


def _first_row(column: str, value: str) -> Damage:
    """The first row's ``column`` set to ``value``."""
    return _table(lambda table: table.assign(**{column: table[column].where(table.index > 0, value)}))


def _array(edit: Callable[[np.ndarray], np.ndarray]) -> Damage:
    """Load the ``.npy``, edit the array, save it back."""
    def damage(path: Path) -> None:
        array = edit(np.load(path))
        with open(path, "wb") as fh:
            np.save(fh, array, allow_pickle=True)
    return damage


def _with(array: np.ndarray, value) -> np.ndarray:
    array = np.array(array, dtype=np.float32)
    array.flat[len(array.flat) // 2] = value
    return array


def _npz(**arrays) -> Damage:
    def damage(path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
    return damage


def _nan_scale(path: Path) -> None:
    with np.load(path) as data:
        arrays = dict(data)
    _npz(**{**arrays, "scale": np.full_like(arrays["scale"], np.nan)})(path)


def _json(edit: Callable[[dict], object]) -> Damage:
    """Edit the parsed JSON and write it back."""
    return lambda path: path.write_text(json.dumps(edit(json.loads(path.read_text(encoding="utf-8")))))


def _step(step: str, **entry) -> Callable[[dict], dict]:
    """A manifest edit setting keys of ``steps.<step>``."""
    def edit(data: dict) -> dict:
        data["steps"][step].update(entry)
        return data
    return edit


def _payload(edit: Callable[[dict], object]) -> Damage:
    """Load the checkpoint, edit it, save it back."""
    return lambda path: torch.save(edit(torch.load(path, weights_only=True)), path)


def _spec(**changes) -> Callable[[dict], dict]:
    def edit(payload: dict) -> dict:
        payload["spec"].update(changes)
        return payload
    return edit


def _without(*keys: str) -> Callable[[dict], dict]:
    return lambda mapping: {k: v for k, v in mapping.items() if k not in keys}


def _nine_outputs(payload: dict) -> dict:
    """A model with 9 outputs for the data's 8 classes."""
    from hudd.models.registry import get_model

    kwargs = {**payload["spec"]["arch_kwargs"], "num_classes": 9}
    payload["spec"]["arch_kwargs"] = kwargs
    payload["state_dict"] = get_model(payload["spec"]["arch"], **kwargs).state_dict()
    return payload


def _nan_weights(payload: dict) -> dict:
    payload["state_dict"] = {name: torch.full_like(value, float("nan")) for name, value in payload["state_dict"].items()}
    return payload


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` 8-bit grayscale pixels and holds almost none."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _copy_of_an_image(path: Path) -> None:
    """A valid image of the set (its first one) at ``path``, in a new class folder if need be."""
    path.parent.mkdir(exist_ok=True)
    shutil.copyfile(sorted(p for p in path.parents[1].rglob("*.png") if p != path)[0], path)


# ---- the matrix ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fuzz:
    """``damage`` breaks ``target`` (relative to the case; ``{layer}``, ``{selected}``, ``{image}``, ``{training}``
    and ``{improvement}`` name a file of the case), then ``hudd <command> CASE <args>`` must stop with one
    line naming one of ``names`` (default: the target's file name)."""

    file: str
    variant: str
    target: str
    damage: Damage
    command: tuple
    names: tuple = ()

    @property
    def id(self) -> str:
        return f"{self.file}-{self.variant}"


def _resolve(case: Path, target: str) -> Path:
    """The path of ``target`` in ``case``, its placeholders filled in from the case's files."""
    summary = pd.read_csv(case / "HUDD/summary.csv", keep_default_na=False)
    images = {name: sorted((case / "DataSets" / split / "TopLeft").iterdir())[2].name
              for name, split in (("image", "TestSet"), ("training", "TrainingSet"), ("improvement", "ImprovementSet"))}
    return case / target.format(layer=pd.read_csv(case / "HUDD/Heatmaps/layers.csv")["layer"][0],
                                selected=summary.loc[summary["selected"].astype(str) == "True", "layer"].iloc[0], **images)


TEST = ("test",)
HEATMAPS = ("heatmaps", "--force")
CLUSTER = ("cluster", "--method", "paper", "--force")
EXPORT = ("export", "--force")
ASSIGN = ("assign", "--force")
ASSIGN_PAPER = ("assign", "--method", "paper", "--force")
RETRAIN = ("retrain", "--retrain-epochs", "1", "--runs", "1", "--no-baselines")
EVALUATE = ("evaluate",)


def _csv_suite(file: str, target: str, command: tuple, needed: str, wrong: tuple[str, str], names: tuple = ()) -> list[Fuzz]:
    """The six damages of every CSV: empty, header only, column ``needed`` missing, a Latin-1 byte, every value of
    ``wrong[0]`` replaced by ``wrong[1]`` (of the wrong type), cut mid-row."""
    damages = {"empty": _bytes(b""), "header-only": _header_only, f"missing-{needed}": _table(lambda t: t.drop(columns=[needed])),
               "latin-1": _latin1, f"wrong-type-{wrong[0]}": _column(*wrong), "truncated-mid-row": _mid_row}
    return [Fuzz(file, variant, target, damage, command, names) for variant, damage in damages.items()]


CSV_FILES = [
    # file, target, the command that reads it, a column it needs, a column and a value of the wrong type, what the line may name
    ("testResult", "HUDD/testResult.csv", HEATMAPS, "correct", ("correct", "maybe")),
    ("trainResult", "HUDD/trainResult.csv", TEST, "correct", ("correct", "maybe")),
    ("heatmap-images", "HUDD/Heatmaps/images.csv", CLUSTER, "image", ("image", "17"), ("images.csv", ".npy")),
    ("heatmap-layers", "HUDD/Heatmaps/layers.csv", CLUSTER, "layer", ("layer", "0"), ("layers.csv", ".npy")),
    ("clusters", "HUDD/ClusterAnalysis/paper/clusters.csv", ASSIGN_PAPER, "cluster", ("layer", "7")),
    ("summary", "HUDD/summary.csv", EXPORT, "selected", ("selected", "maybe")),
    ("layer-clusters", "HUDD/ClusterAnalysis/{selected}/clusters.csv", EXPORT, "cluster", ("image", "17")),
    ("pretrained-clusters", "HUDD/ClusterAnalysis/joint/clusters.csv", ASSIGN, "cluster", ("image", "17")),
    ("method", "HUDD/ClusterAnalysis/joint/method.csv", ASSIGN, "extractor_name", ("extractor_name", "17")),
    ("labels", "HUDD/UnsafeSet/labels.csv", RETRAIN, "label", ("label", "3.5")),
    ("unsafe", "HUDD/UnsafeSet/unsafe.csv", RETRAIN, "image", ("image", "17"), ("unsafe.csv", "labels.csv")),
    ("params", "DataSets/TestSet/params.csv", EVALUATE, "cause", ("image", "17")),
]

CSV_EXTRAS = [
    Fuzz("testResult", "empty-via-assign", "HUDD/testResult.csv", _bytes(b""), ASSIGN),
    Fuzz("testResult", "missing-correct-via-assign", "HUDD/testResult.csv", _table(lambda t: t.drop(columns=["correct"])), ASSIGN),
    Fuzz("heatmap-images", "extra-row", "HUDD/Heatmaps/images.csv", _table(lambda t: pd.concat([t, t.iloc[-1:]])), CLUSTER,
         ("images.csv", ".npy")),
    Fuzz("heatmap-layers", "unknown-layer", "HUDD/Heatmaps/layers.csv", _first_row("layer", "features.99"), CLUSTER, ("layers.csv", "features.99")),
    Fuzz("clusters", "unknown-image", "HUDD/ClusterAnalysis/paper/clusters.csv", _first_row("image", "TestSet/TopLeft/nope.png"), ASSIGN_PAPER),
    Fuzz("summary", "no-selected-layer", "HUDD/summary.csv", _column("selected", "False"), EXPORT),
    Fuzz("labels", "utf-16", "HUDD/UnsafeSet/labels.csv", _utf16, RETRAIN),
    Fuzz("labels", "unknown-label", "HUDD/UnsafeSet/labels.csv", _first_row("label", "Upwards"), RETRAIN),
    Fuzz("labels", "duplicated-rows", "HUDD/UnsafeSet/labels.csv", _table(lambda t: pd.concat([t, t])), RETRAIN),
    Fuzz("labels", "nul-bytes", "HUDD/UnsafeSet/labels.csv", _nul_bytes, RETRAIN),
    Fuzz("labels", "latin-1-via-assign", "HUDD/UnsafeSet/labels.csv", _latin1, ASSIGN),
    Fuzz("labels", "utf-16-via-assign", "HUDD/UnsafeSet/labels.csv", _utf16, ASSIGN),
    Fuzz("labels", "empty-via-assign", "HUDD/UnsafeSet/labels.csv", _bytes(b""), ASSIGN),
    Fuzz("params", "missing-image", "DataSets/TestSet/params.csv", _table(lambda t: t.drop(columns=["image"])), EVALUATE),
]

MANIFEST_DAMAGES = {
    "truncated-json": _cut(0.5),
    "empty": _bytes(b""),
    "non-utf-8": lambda path: path.write_bytes(path.read_bytes().replace(b'"cpu"', b'"cp\xffu"', 1)),
    "a-directory": _directory,
    "a-list": _json(lambda data: list(data)),
    "steps-a-list": _json(lambda data: {**data, "steps": list(data["steps"].values())}),
    "step-a-string": _json(lambda data: {**data, "steps": {**data["steps"], "test": "done"}}),
    "outputs-a-string": _json(_step("test", outputs="testResult.csv")),
    "outputs-an-int": _json(_step("test", outputs=3)),
    "outputs-with-non-strings": _json(_step("test", outputs=[1, None, "testResult.csv"])),
    "fingerprint-an-int": _json(_step("test", fingerprint=42)),
    "done-a-string": _json(_step("test", done="yes")),
    "method-a-list": _json(lambda data: {**data, "method": ["paper"]}),
}

TOML_FILES = {
    "non-utf-8": b'device = "cpu\xff"\n',
    "utf-16": "seed = 1\n".encode("utf-16"),
    "truncated": b"batch_size = ",
    "device-an-int": b"device = 3\n",
    "batch_size-a-string": b'batch_size = "big"\n',
    "batch_size-a-fraction": b"batch_size = 2.5\n",
    "batch_size-0": b"batch_size = 0\n",
    "layers-an-int": b"layers = 5\n",
    "layers-of-ints": b"layers = [1, 2]\n",
    "unknown-key": b"bach_size = 8\n",
    "device-a-table": b"[device]\n",
    "empty-table-name": b"[]\n",
    "array-of-tables": b"[[layers]]\n",
    "duplicate-key": b"seed = 1\nseed = 2\n",
    "unknown-device": b'device = "tpu"\n',
    "sf-nan": b"sf = nan\n",
    "lr-inf": b"lr = inf\n",
}

CHECKPOINT_DAMAGES = {
    "truncated": _cut(0.5),
    "empty": _bytes(b""),
    "not-a-zip": _bytes(b"not a model\n"),
    "missing-spec": _payload(_without("spec")),
    "missing-state_dict": _payload(_without("state_dict")),
    "spec-without-arch": _payload(lambda p: {**p, "spec": _without("arch")(p["spec"])}),
    "spec-a-list": _payload(lambda p: {**p, "spec": list(p["spec"])}),
    "more-outputs-than-classes": _payload(_nine_outputs),
    "empty-mean-std": _payload(_spec(mean=[], std=[])),
    "classes-a-string": _payload(_spec(classes="TopLeft")),
    "nan-weights": _payload(_nan_weights),
    "a-list": lambda path: torch.save([1, 2, 3], path),
    "a-tensor": lambda path: torch.save(torch.zeros(3), path),
}

TEST_IMAGE = "DataSets/TestSet/TopLeft/{image}"
NON_UTF8 = os.fsdecode(b"\xff\xfe.png")
LATIN1_NAME = os.fsdecode(b"\xe9t\xe9.png")
NON_UTF8_FOLDER = os.fsdecode(b"Top\xffLeft")
IMAGES = [
    Fuzz("image", "truncated", TEST_IMAGE, _cut(0.5), TEST),
    Fuzz("image", "zero-bytes", TEST_IMAGE, _bytes(b""), TEST),
    Fuzz("image", "text-named-png", TEST_IMAGE, _bytes(b"not really a png\n"), TEST),
    Fuzz("image", "decompression-bomb-error", TEST_IMAGE, _bytes(_png_header(100_000, 100_000)), TEST),
    Fuzz("image", "decompression-bomb-warning", TEST_IMAGE, _bytes(_png_header(10_000, 10_000)), TEST),
    Fuzz("image", "zero-width", TEST_IMAGE, _bytes(_png_header(0, 32)), TEST),
    Fuzz("image", "truncated-training", "DataSets/TrainingSet/TopLeft/{training}", _cut(0.5), TEST),
    Fuzz("image", "truncated-improvement", "DataSets/ImprovementSet/TopLeft/{improvement}", _cut(0.5), ASSIGN),
    Fuzz("image", "text-named-png-improvement", "DataSets/ImprovementSet/TopLeft/{improvement}", _bytes(b"text\n"), ASSIGN),
    Fuzz("name", "non-utf-8", f"DataSets/TestSet/TopLeft/{NON_UTF8}", _copy_of_an_image, TEST, ("TestSet/TopLeft",)),
    Fuzz("name", "non-utf-8-unreadable", f"DataSets/TestSet/TopLeft/{NON_UTF8}", _bytes(b"text\n"), TEST, ("TestSet/TopLeft",)),
    Fuzz("name", "non-utf-8-latin-1", f"DataSets/TrainingSet/TopLeft/{LATIN1_NAME}", _copy_of_an_image, TEST,
         ("TrainingSet/TopLeft",)),
    Fuzz("name", "non-utf-8-class-folder", f"DataSets/TestSet/{NON_UTF8_FOLDER}/000000.png", _copy_of_an_image, TEST, ("TestSet",)),
    Fuzz("name", "non-utf-8-improvement", f"DataSets/ImprovementSet/TopLeft/{NON_UTF8}", _copy_of_an_image, ASSIGN,
         ("ImprovementSet/TopLeft",)),
]

HEATMAP_NPY = {
    "zero-bytes": _bytes(b""),
    "truncated": _cut(0.5),
    "not-npy": _bytes(b"row,value\n0,1\n"),
    "object-dtype": _array(lambda a: np.array([None] * len(a), dtype=object)),
    "str-dtype": _array(lambda a: np.full(len(a), "hot")),
    "complex-dtype": _array(lambda a: a.astype(np.complex64)),
    "one-dimensional": _array(lambda a: a.reshape(-1)),
    "row-missing": _array(lambda a: a[:-1]),
    "nan": _array(lambda a: _with(a, np.nan)),
    "inf": _array(lambda a: _with(a, np.inf)),
}

FEATURES_NPY = {
    "zero-bytes": _bytes(b""),
    "truncated": _cut(0.5),
    "transposed": _array(lambda a: a.T),
    "row-missing": _array(lambda a: a[:-1]),
    "nan": _array(lambda a: _with(a, np.nan)),
    "object-dtype": _array(lambda a: np.array([None] * len(a), dtype=object)),
}

SPACE_NPZ = {
    "zero-bytes": _bytes(b""),
    "not-a-zip": _bytes(b"mean,scale\n"),
    "missing-components": _npz(mean=np.zeros(3), scale=np.ones(3), center=np.zeros(3)),
    "wrong-size": _npz(mean=np.zeros(3), scale=np.ones(3), center=np.zeros(3), components=np.zeros((0, 3))),
    "nan-scale": _nan_scale,
}

MATRIX = [
    *(fuzz for row in CSV_FILES for fuzz in _csv_suite(*row)),
    *CSV_EXTRAS,
    *(Fuzz("manifest", f"{variant}-via-{command[0]}", "HUDD/manifest.json", damage, command)
      for command in (TEST, ("assign",)) for variant, damage in MANIFEST_DAMAGES.items()),
    *(Fuzz("hudd.toml", variant, "hudd.toml", _bytes(text), TEST) for variant, text in TOML_FILES.items()),
    *(Fuzz("checkpoint", variant, MODEL, damage, TEST) for variant, damage in CHECKPOINT_DAMAGES.items()),
    *IMAGES,
    *(Fuzz("heatmap-npy", variant, "HUDD/Heatmaps/{layer}.npy", damage, CLUSTER) for variant, damage in HEATMAP_NPY.items()),
    *(Fuzz("features-npy", variant, "HUDD/ClusterAnalysis/joint/features.npy", damage, ASSIGN) for variant, damage in FEATURES_NPY.items()),
    *(Fuzz("space-npz", variant, "HUDD/ClusterAnalysis/joint/space.npz", damage, ASSIGN) for variant, damage in SPACE_NPZ.items()),
]


@pytest.mark.parametrize("fuzz", MATRIX, ids=[fuzz.id for fuzz in MATRIX])
def test_damaged_file_is_one_line_exit_2_and_loses_nothing(case: Path, fuzz: Fuzz):
    """Damage one file and run the command that reads it: exit 2, one line naming the file, no warning, nothing lost."""
    target = _resolve(case, fuzz.target)
    fuzz.damage(target)
    before = _artifacts(case)
    with _terminal_warnings() as shown:
        result = run_cli(fuzz.command[0], str(case), *fuzz.command[1:])
    _expect_error(result, fuzz.names or (target.name,))
    assert not shown, f"a warning besides the error line: {shown[0].category.__name__}: {shown[0].message}"
    _assert_intact(before, case)


# ---- not errors: recomputed, read, reported ------------------------------------------------------

RECOMPUTED = [
    Fuzz("testResult", "truncated-mid-row", "HUDD/testResult.csv", _mid_row, ("test", "--force")),
    Fuzz("trainResult", "empty", "HUDD/trainResult.csv", _bytes(b""), ("test", "--force")),
    Fuzz("heatmap-npy", "zero-bytes", "HUDD/Heatmaps/{layer}.npy", _bytes(b""), HEATMAPS),
    Fuzz("heatmap-images", "header-only", "HUDD/Heatmaps/images.csv", _header_only, HEATMAPS),
    Fuzz("distances-npy", "truncated", "HUDD/ClusterAnalysis/{layer}/distances.npy", _cut(0.5), CLUSTER),
]


@pytest.mark.parametrize("fuzz", RECOMPUTED, ids=[fuzz.id for fuzz in RECOMPUTED])
def test_damaged_output_of_a_step_that_reruns_is_recomputed(case: Path, fuzz: Fuzz):
    """``--force`` reruns the step that wrote the file: exit 0 and the file is written anew, as it was."""
    target = _resolve(case, fuzz.target)
    original = target.read_bytes()
    fuzz.damage(target)
    result = run_cli(fuzz.command[0], str(case), *fuzz.command[1:])
    assert result.exit_code == 0, _what_happened(result)
    assert target.read_bytes() == original, f"{target} is not recomputed"


def test_16_bit_grayscale_image_is_read(case: Path):
    """A 16-bit grayscale PNG of the model's size is scaled to 8 bits (hudd.case.data.read_image), not an error."""
    iio.imwrite(case / "DataSets/TestSet/TopLeft/zzz-16-bit.png", np.full((32, 32), 40000, np.uint16))
    result = run_cli("test", str(case))
    assert result.exit_code == 0, _what_happened(result)
    assert "TestSet/TopLeft/zzz-16-bit.png" in set(pd.read_csv(case / "HUDD/testResult.csv")["image"])


QUOTAS = _csv_suite("quotas", "HUDD/UnsafeSet/quotas.csv", ("report",), "quota", ("quota", "many"))


@pytest.mark.parametrize("fuzz", QUOTAS, ids=[fuzz.id for fuzz in QUOTAS])
def test_report_of_a_damaged_table_is_written(case: Path, fuzz: Fuzz):
    """The report reads quotas.csv and, by design, shows a damaged workspace instead of failing on it."""
    fuzz.damage(_resolve(case, fuzz.target))
    (case / "HUDD/report.html").unlink()
    before = _artifacts(case)
    result = run_cli("report", str(case))
    assert result.exit_code == 0 and not result.stderr.strip(), _what_happened(result)
    assert (case / "HUDD/report.html").is_file()
    _assert_intact(before, case)


# ---- bookkeeping that names paths outside the workspace ------------------------------------------

def _outside_outputs(case: Path, outside: Path) -> None:
    _json(_step("test", outputs=[str(outside), "../DNNModels", "testResult.csv", "trainResult.csv"]))(case / "HUDD/manifest.json")


def _outside_previous_outputs(case: Path, outside: Path) -> None:
    _json(_step("test", done=False, previous_outputs=[str(outside), "../DNNModels"]))(case / "HUDD/manifest.json")


def _link_out(case: Path, outside: Path) -> None:
    (case / "HUDD/escape").symlink_to(case / "DNNModels", target_is_directory=True)
    _json(_step("test", outputs=["escape/alexnet-small.pt", "testResult.csv", "trainResult.csv"]))(case / "HUDD/manifest.json")


def _workspace_root(case: Path, outside: Path) -> None:
    _json(_step("test", outputs=[".", "testResult.csv", "trainResult.csv"]))(case / "HUDD/manifest.json")


CONFINEMENT = [_outside_outputs, _outside_previous_outputs, _link_out, _workspace_root]


@pytest.mark.parametrize("damage", CONFINEMENT, ids=["absolute-and-parent-outputs", "unfinished-step-previous-outputs",
                                                     "output-through-a-link-out", "workspace-root-as-output"])
def test_manifest_paths_outside_the_workspace_are_never_deleted(case: Path, tmp_path: Path, damage):
    """Reported defect 1: ``hudd test --force`` deleted the previous outputs the manifest listed, wherever they were.
    Exit 0 or 2 are both fine; what lies outside the workspace (and the workspace's artifacts) must survive."""
    outside = tmp_path / "outside.txt"
    outside.write_text("a user's file")
    damage(case, outside)
    before, models = _artifacts(case), _tree(case / "DNNModels")
    result = run_cli("test", str(case), "--force")
    assert result.exit_code in (0, 2), _what_happened(result)
    if result.exit_code == 2:
        one_line_error(result)
    assert outside.is_file(), f"{outside} was deleted"
    assert _tree(case / "DNNModels") == models, "DNNModels/ was touched"
    _assert_intact(before, case)


# ---- --workspace inside the case's data or models ------------------------------------------------

WORKSPACES = {
    # id: the flag's value, or hudd.toml's
    "flag-in-DataSets": ("DataSets/HUDD", None),
    "flag-DataSets-itself": ("DataSets", None),
    "flag-absolute-in-TestSet": ("{case}/DataSets/TestSet", None),
    "flag-DNNModels": ("DNNModels", None),
    "flag-case-root": (".", None),
    "toml-in-DataSets": (None, "DataSets/HUDD"),
}


@pytest.mark.parametrize("flag, toml", WORKSPACES.values(), ids=WORKSPACES.keys())
def test_workspace_inside_the_data_is_refused(case: Path, flag: str | None, toml: str | None, monkeypatch):
    """Reported defect 6: a workspace inside DataSets/ (or DNNModels/, or holding them) is refused with exit 2."""
    monkeypatch.chdir(case)
    if toml:
        (case / "hudd.toml").write_text(f'workspace = "{toml}"\n')
    args = ("--workspace", flag.format(case=case)) if flag else ()
    before = {name: _tree(case / name) for name in ("DataSets", "DNNModels")}
    result = run_cli("test", str(case), *args)
    _expect_error(result, ("workspace",))
    assert {name: _tree(case / name) for name in ("DataSets", "DNNModels")} == before, "DataSets/ or DNNModels/ changed"


# ---- a full disk, in a subprocess on a small tmpfs -------------------------------------------------

def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or exc
        pytest.skip(f"cannot mount a tmpfs at {folder} (needs root and CAP_SYS_ADMIN): {str(detail).strip()}")


def _fill(folder: Path, keep: int) -> None:
    """Fill the file system of ``folder`` with one file until ``keep`` bytes are free."""
    with open(folder / "filler", "wb") as fh:
        os.posix_fallocate(fh.fileno(), 0, max(1, shutil.disk_usage(folder).free - keep))


DISK_FULL = [(HEATMAPS, 16), (HEATMAPS, 128), ((*CLUSTER, "--export", "all"), 16), ((*CLUSTER, "--export", "all"), 128)]


@pytest.mark.parametrize("command, free_kib", DISK_FULL, ids=[f"{c[0]}-{kib}KiB-free" for c, kib in DISK_FULL])
def test_full_disk_is_one_line_naming_the_file(tmp_path: Path, analyzed: Path, command: tuple, free_kib: int):
    """The case on a tmpfs with ``free_kib`` KiB free: exit 2 and one line naming the file being written, not a
    SIGBUS from a memory-mapped write, and nothing finished is lost. The commands need more room than deleting
    their old outputs first would free: before the heatmaps run the workspace holds float16 heatmaps (the rerun
    writes float32), and the clustering exports every layer's clusters (the old export holds the selected one)."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "24m")
    try:
        case = copy_case(analyzed, disk)
        if command == HEATMAPS:
            assert run_cli("heatmaps", str(case), "--heatmap-dtype", "float16", "--force").exit_code == 0
        _fill(disk, free_kib * 1024)
        before = _artifacts(case)
        run = subprocess.run([sys.executable, "-m", "hudd.cli", "--quiet", command[0], str(case), *command[1:]], cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, errors="replace", timeout=300)
        lines = run.stderr.strip().splitlines()
        summary = f"exit {run.returncode}; stderr {lines[0]!r} ... {lines[-1]!r}" if lines else f"exit {run.returncode}; stderr empty"
        assert run.returncode >= 0, f"killed by signal {-run.returncode}; {summary}"
        assert run.returncode == 2, summary
        assert len(lines) == 1 and lines[0].startswith("hudd: error: ") and "Traceback" not in run.stdout, summary
        assert str(case) in lines[0], f"the line names no file of the case: {lines[0]}"
        (disk / "filler").unlink()
        _assert_intact(before, case)
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False, capture_output=True)
