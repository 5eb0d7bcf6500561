import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hudd.core.errors import HuddError
from hudd.core.files import atomic_path, file_hash, listing_hash, remove, replace, save_npy, sweep, write_text
from hudd.workspace.workspace import Workspace, fingerprint


def test_atomic_write_leaves_nothing_when_interrupted(tmp_path: Path):
    target = tmp_path / "out" / "result.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a table")
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert list(target.parent.iterdir()) == [], "the temporary file is removed too"


def test_atomic_write_replaces_whole_file(tmp_path: Path):
    target = tmp_path / "a.npy"
    save_npy(target, np.arange(5))
    save_npy(target, np.arange(3))
    assert np.load(target).tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]


def _done(ws: Workspace, model: Path) -> str:
    fp = fingerprint("test", 1, {"batch_size": 64}, {"model": file_hash(model)})
    ws.start_step("test")
    write_text(ws.test_result, "image,correct\n")
    ws.finish_step("test", fp, inputs={"model": file_hash(model)}, outputs=[ws.test_result])
    return fp


def test_step_is_current_until_an_input_changes(tmp_path: Path):
    ws = Workspace(tmp_path / "HUDD")
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights v1")
    fp = _done(ws, model)
    assert ws.is_current("test", fp)
    model.write_bytes(b"weights v2")
    assert not ws.is_current("test", fingerprint("test", 1, {"batch_size": 64}, {"model": file_hash(model)})), "changed model"
    assert fingerprint("test", 1, {"batch_size": 32}, {}) != fingerprint("test", 1, {"batch_size": 64}, {}), "changed config"
    assert fingerprint("test", 2, {}, {}) != fingerprint("test", 1, {}, {}), "changed step version"


def test_missing_output_means_not_done_and_a_damaged_manifest_is_named(tmp_path: Path):
    ws = Workspace(tmp_path / "HUDD")
    model = tmp_path / "model.pt"
    model.write_bytes(b"w")
    fp = _done(ws, model)
    ws.test_result.unlink()
    assert not ws.is_current("test", fp)
    fp = _done(ws, model)
    for damage, fragment in [("{not json", "not valid JSON"), ('{"steps": []}', "no \"steps\" table"),
                             ('{"steps": {"test": {"outputs": "testResult.csv"}}}', "not a list of paths"),
                             ('{"steps": {"test": {"outputs": ["../DNNModels"]}}}', "outside the workspace")]:
        ws.manifest_path.write_text(damage)
        with pytest.raises(HuddError, match=fragment) as info:
            ws.is_current("test", fp)
        assert str(ws.manifest_path) in str(info.value) and "delete it to rerun every step" in str(info.value)


def test_start_step_keeps_old_outputs_until_the_step_finishes_then_clears_the_stale_ones(tmp_path: Path):
    ws = Workspace(tmp_path / "HUDD")
    model = tmp_path / "model.pt"
    model.write_bytes(b"w")
    fp = _done(ws, model)
    ws.start_step("test", "new fingerprint")
    assert ws.test_result.is_file(), "a run stopped by bad input loses nothing already computed"
    assert json.loads(ws.manifest_path.read_text())["steps"]["test"]["done"] is False
    assert not ws.is_current("test", fp), "the old outputs never look current"
    ws.start_step("test", "newer fingerprint")  # stopped again: the old outputs are still remembered
    write_text(ws.train_result, "image,correct\n")
    ws.finish_step("test", "newer fingerprint", inputs={}, outputs=[ws.train_result])
    assert not ws.test_result.exists(), "an old output the new run did not write again is deleted"
    assert ws.train_result.is_file() and ws.is_current("test", "newer fingerprint")


def test_a_staged_step_keeps_the_old_outputs_until_it_commits(tmp_path: Path):
    ws = Workspace(tmp_path / "HUDD")
    save_npy(ws.heatmap("conv1"), np.zeros(2))
    out = ws.staging("heatmaps")
    save_npy(out.heatmap("conv2"), np.ones(2))
    assert np.load(ws.heatmap("conv1")).tolist() == [0, 0] and not ws.heatmap("conv2").exists()
    ws.commit(out, [ws.heatmaps_dir])
    assert sorted(p.name for p in ws.heatmaps_dir.iterdir()) == ["conv2.npy"]
    assert not out.root.exists()


def test_listing_hash_sees_added_and_resized_files(tmp_path: Path):
    (tmp_path / "a.png").write_bytes(b"12")
    h1 = listing_hash(tmp_path, ["a.png"])
    (tmp_path / "a.png").write_bytes(b"123")
    assert listing_hash(tmp_path, ["a.png"]) != h1
    (tmp_path / "b.png").write_bytes(b"1")
    assert listing_hash(tmp_path, ["a.png", "b.png"]) != listing_hash(tmp_path, ["a.png"])


_HOLDER = """
import sys, time
from hudd.workspace.workspace import Workspace
with Workspace(sys.argv[1]).locked("hudd analyze"):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_second_run_is_refused_while_first_holds_the_lock(tmp_path: Path):
    ws = Workspace(tmp_path / "HUDD")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(ws.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(HuddError) as info:
            with ws.locked("hudd cluster"):
                pass
        message = str(info.value)
        assert f"pid {holder.pid}" in message and "hudd analyze" in message and str(ws.root) in message
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        with ws.locked("hudd cluster"):
            assert f"pid {os.getpid()}" in ws.lock_path.read_text(), "a killed holder releases the lock"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_remove_refuses_every_path_outside_its_root(tmp_path: Path):
    root, outside = tmp_path / "HUDD", tmp_path / "DNNModels"
    (root / "Heatmaps").mkdir(parents=True)
    outside.mkdir()
    (outside / "model.pt").write_bytes(b"weights")
    (root / "escape").symlink_to(outside)
    for path in [outside, root / "../DNNModels", root / "escape" / "model.pt", root / ".", root]:
        with pytest.raises(HuddError, match="hudd deletes only files inside its workspace"):
            remove(path, root)
    remove(root / "escape", root)
    assert (outside / "model.pt").read_bytes() == b"weights", "a link is removed, never followed"
    remove(root / "Heatmaps", root)
    assert not (root / "Heatmaps").exists() and root.is_dir()


def test_replace_swaps_a_folder_and_sweep_finishes_an_interrupted_swap(tmp_path: Path):
    root = tmp_path / "HUDD"
    (root / "Heatmaps").mkdir(parents=True)
    (root / "Heatmaps" / "old.npy").write_bytes(b"old")
    (root / "new").mkdir()
    (root / "new" / "a.npy").write_bytes(b"new")
    replace(root / "new", root / "Heatmaps", root)
    assert sorted(p.name for p in root.iterdir()) == ["Heatmaps"] and (root / "Heatmaps" / "a.npy").read_bytes() == b"new"
    (root / "Heatmaps").rename(root / ".Heatmaps.old")  # killed between the two renames
    (root / "Heatmaps2").mkdir()
    (root / "Heatmaps2" / ".x.npy.abcd1234.tmp").write_bytes(b"half")  # killed mid-write
    sweep(root)
    assert (root / "Heatmaps" / "a.npy").read_bytes() == b"new", "the old folder is put back"
    assert list((root / "Heatmaps2").iterdir()) == [], "temporary files of killed writes are deleted"
