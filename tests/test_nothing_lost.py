"""Nothing lost, nothing escapes, through the real CLI: a damaged bookkeeping file cannot make hudd
delete outside its workspace, a step stopped by bad input keeps every finished output, labels a
person typed survive any sequence of reruns, and the workspace may not overlap the case's data."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import copy_case, one_line_error, run_cli
from tests.test_bad_input import _artifacts, _assert_intact, _image


def _digests(case: Path) -> dict[str, str]:
    before = _artifacts(case)
    assert before, "the case holds artifacts to protect"
    return before


def test_a_manifest_cannot_make_hudd_delete_outside_its_workspace(analyzed: Path, tmp_path: Path):
    case = copy_case(analyzed, tmp_path)
    elsewhere = tmp_path / "precious.txt"
    elsewhere.write_text("the user's notes")
    manifest = json.loads((case / "HUDD/manifest.json").read_text())
    manifest["steps"]["test"]["outputs"] += [str(elsewhere), "../DNNModels"]
    (case / "HUDD/manifest.json").write_text(json.dumps(manifest))
    before = _digests(case)
    one_line_error(run_cli("test", str(case), "--force"), "manifest.json", "outside the workspace")
    assert elsewhere.read_text() == "the user's notes"
    assert (case / "DNNModels/alexnet-small.pt").is_file()
    _assert_intact(before, case)


def test_typed_labels_survive_every_rerun_of_assign(analyzed: Path, tmp_path: Path):
    case = copy_case(analyzed, tmp_path)
    improve = case / "DataSets/ImprovementSet"
    for path in list(improve.glob("*/*.png")):
        path.rename(improve / f"{path.parent.name}-{path.name}")
    for folder in [p for p in improve.iterdir() if p.is_dir()]:
        shutil.rmtree(folder)
    typed = {}
    for args in (["--budget", "20"], ["--budget", "10"], ["--sf", "0.3"], ["--budget", "20"]):
        assert run_cli("assign", str(case), *args).exit_code == 0
        labels = pd.read_csv(case / "HUDD/UnsafeSet/labels.csv", keep_default_na=False)
        for image, label in zip(labels["image"], labels["label"]):
            if image in typed:
                assert label == typed[image], f"{image}: the label typed in earlier is kept"
        labels["label"] = [typed.setdefault(image, image.split("/")[1].split("-")[0]) for image in labels["image"]]
        labels.to_csv(case / "HUDD/UnsafeSet/labels.csv", index=False)
    assert run_cli("assign", str(case), "--budget", "7").exit_code == 0
    history = pd.read_csv(case / "HUDD/labels-history.csv", keep_default_na=False)
    assert dict(zip(history["image"], history["value"])) == typed, "the history keeps every label ever typed"


def test_heatmaps_stopped_by_an_unreadable_image_keep_the_finished_heatmaps(analyzed: Path, tmp_path: Path):
    case = copy_case(analyzed, tmp_path)
    errors = pd.read_csv(case / "HUDD/testResult.csv").query("not correct")
    victim = case / "DataSets" / errors["image"].iloc[-1]
    before = _digests(case)
    victim.write_bytes(victim.read_bytes()[:40])
    one_line_error(run_cli("heatmaps", str(case), "--force"), str(victim), "cannot read image")
    _assert_intact(before, case)
    assert len(list((case / "HUDD/Heatmaps").glob("*.npy"))) == 8


def test_cluster_validates_every_heatmap_before_replacing_anything(analyzed: Path, tmp_path: Path):
    case = copy_case(analyzed, tmp_path)
    heatmap = sorted((case / "HUDD/Heatmaps").glob("*.npy"))[-1]
    for damage, fragment in [(lambda a: a[:-1], "rows"), (lambda a: np.where(a == a.max(), np.nan, a), "NaN")]:
        array = np.load(heatmap)
        shutil.copy(heatmap, tmp_path / "good.npy")
        before = _digests(case)
        np.save(heatmap, damage(array).astype(array.dtype))
        del before[str(heatmap.relative_to(case))]
        one_line_error(run_cli("cluster", str(case), "--method", "paper", "--force"), str(heatmap), fragment)
        _assert_intact(before, case)
        shutil.copy(tmp_path / "good.npy", heatmap)


def test_export_with_a_clustered_image_gone_keeps_the_exported_folders(analyzed: Path, tmp_path: Path):
    case = copy_case(analyzed, tmp_path)
    clustered = pd.read_csv(case / "HUDD/ClusterAnalysis/paper/clusters.csv")["image"]
    before = _digests(case)
    (case / "DataSets" / clustered.iloc[0]).unlink()
    one_line_error(run_cli("export", str(case), "--force"), clustered.iloc[0], "missing", "hudd analyze")
    _assert_intact(before, case)


def test_a_workspace_overlapping_the_case_data_is_refused(analyzed: Path, tmp_path: Path, monkeypatch):
    case = copy_case(analyzed, tmp_path)
    monkeypatch.chdir(case)  # the flag is relative to the current folder, hudd.toml's key to the case
    listing = sorted(str(p) for p in (case / "DataSets").rglob("*"))
    for folder in ("DataSets/TestSet/HUDD", "DNNModels", ".", str(case / "DataSets")):
        one_line_error(run_cli("test", str(case), "--workspace", folder), f"--workspace {folder}", "choose a folder of its own")
    (case / "hudd.toml").write_text('workspace = "DataSets/HUDD"\n')
    one_line_error(run_cli("test", str(case)), "hudd.toml: workspace", "lies inside")
    assert sorted(str(p) for p in (case / "DataSets").rglob("*")) == listing, "nothing was written into the data"


def test_a_killed_write_leaves_no_temporary_file_and_an_interrupted_swap_is_undone(analyzed: Path, tmp_path: Path):
    case = copy_case(analyzed, tmp_path)
    ws = case / "HUDD"
    before = _digests(case)
    (ws / ".testResult.csv.k1ll3d00.tmp").write_text("half a table")
    (ws / "Heatmaps").rename(ws / ".Heatmaps.old")
    assert run_cli("test", str(case)).exit_code == 0
    assert not list(ws.rglob("*.tmp")) and not (ws / ".Heatmaps.old").exists()
    assert _artifacts(case) == before


def test_steps_swap_their_outputs_into_place_from_a_relative_case_path(analyzed: Path, tmp_path: Path, monkeypatch):
    case = copy_case(analyzed, tmp_path)
    monkeypatch.chdir(case.parent)
    before = set(_digests(case))
    for command in ("heatmaps", "cluster", "assign"):
        result = run_cli(command, "case", "--force")
        assert result.exit_code == 0, result.output
    assert not (case / "HUDD/case").exists() and not list((case / "HUDD").glob(".staging/*"))
    assert before <= set(_artifacts(case)), "every output is in its place"
