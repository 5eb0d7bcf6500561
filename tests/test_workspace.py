import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hudd.errors import HuddError
from hudd.workspace import Workspace, atomic_path, file_hash, fingerprint, listing_hash, save_npy, write_text


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


def test_missing_output_or_corrupt_manifest_means_not_done(tmp_path: Path, capsys):
    ws = Workspace(tmp_path / "HUDD")
    model = tmp_path / "model.pt"
    model.write_bytes(b"w")
    fp = _done(ws, model)
    ws.test_result.unlink()
    assert not ws.is_current("test", fp)
    fp = _done(ws, model)
    ws.manifest_path.write_text("{not json")
    assert not ws.is_current("test", fp)
    assert "unreadable" in capsys.readouterr().err


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


def test_listing_hash_sees_added_and_resized_files(tmp_path: Path):
    (tmp_path / "a.png").write_bytes(b"12")
    h1 = listing_hash(tmp_path, ["a.png"])
    (tmp_path / "a.png").write_bytes(b"123")
    assert listing_hash(tmp_path, ["a.png"]) != h1
    (tmp_path / "b.png").write_bytes(b"1")
    assert listing_hash(tmp_path, ["a.png", "b.png"]) != listing_hash(tmp_path, ["a.png"])


_HOLDER = """
import sys, time
from hudd.workspace import Workspace
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
