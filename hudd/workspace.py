"""The workspace (the original tool's folder "T"): every artifact path, atomic writes, manifest, lock.

No other module builds a path into the workspace. Layout (``<case>/HUDD/`` by default)::

    manifest.json            per step: done, input fingerprint, inputs, outputs, versions, times
    trainResult.csv, testResult.csv
    Heatmaps/<layer>.npy     (n_error_images, N, M) relevance; rows indexed by Heatmaps/images.csv
    ClusterAnalysis/<layer>/ distances.npy, distances.xlsx, wicd.csv, wicd.png, clusters.csv, C<i>/, C<i>.gif
    clusters.csv, summary.csv
    UnsafeSet/C<i>/, unsafe.csv, quotas.csv, labels.csv
    Retrain/metrics.csv, Retrain/comparison.csv
    evaluation.csv           clusters scored against the simulator's injected causes
    clusterings.csv          every clustering scored side by side (evaluate --compare)
    report.html

Writes go to a temporary name in the target folder and are renamed into place with
:func:`os.replace`, so an interrupted run never leaves a half-written file that looks finished.
A step is current when the manifest records it done with the same input fingerprint and all its
outputs exist; otherwise it reruns.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from . import __version__
from .errors import HuddError
from .methods import PAPER

__all__ = ["Workspace", "atomic_path", "write_text", "save_npy", "save_npz", "write_csv", "file_hash", "listing_hash", "fingerprint"]


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # name the file being written, not the temporary one
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> None:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def save_npy(path: Path, array: np.ndarray) -> None:
    """Atomically save ``array`` as ``.npy``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, array)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """Atomically save named ``arrays`` as one uncompressed ``.npz``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def write_csv(path: Path, frame) -> None:
    """Atomically write a pandas DataFrame as CSV without its index."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def file_hash(path: Path) -> str:
    """SHA-256 of a file's bytes, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def listing_hash(root: Path, relpaths: Iterable[str]) -> str:
    """SHA-256 of a data set listing: each relative path with its size in bytes.

    Cheap enough for hundreds of thousands of images; it detects added, removed, renamed and
    resized files, not an in-place edit that keeps the byte count.
    """
    digest = hashlib.sha256()
    root = Path(root)
    for rel in sorted(relpaths):
        digest.update(f"{rel}\t{(root / rel).stat().st_size}\n".encode())
    return digest.hexdigest()


def fingerprint(step: str, version: int, config: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """SHA-256 of canonical JSON of a step's name, version, the config keys it reads and its input hashes."""
    payload = {"step": step, "version": version, "config": dict(config), "inputs": dict(inputs)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    import torch

    return {"hudd": __version__, "python": sys.version.split()[0], "torch": torch.__version__, "numpy": np.__version__}


class Workspace:
    """Paths and bookkeeping of one workspace folder.

    Parameters
    ----------
    root : Path
        The workspace folder (created on first write).
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    @classmethod
    def of_case(cls, case_root: Path, folder: str = "HUDD") -> "Workspace":
        """The workspace of a case: ``folder`` relative to the case folder, or an absolute path."""
        return cls(Path(case_root) / folder)

    # ---- paths ---------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def lock_path(self) -> Path:
        return self.root / ".lock"

    @property
    def train_result(self) -> Path:
        return self.root / "trainResult.csv"

    @property
    def test_result(self) -> Path:
        return self.root / "testResult.csv"

    @property
    def heatmaps_dir(self) -> Path:
        return self.root / "Heatmaps"

    def heatmap(self, layer: str) -> Path:
        return self.heatmaps_dir / f"{layer}.npy"

    @property
    def heatmap_index(self) -> Path:
        return self.heatmaps_dir / "images.csv"

    @property
    def heatmap_layers(self) -> Path:
        return self.heatmaps_dir / "layers.csv"

    @property
    def heatmap_progress(self) -> Path:
        return self.heatmaps_dir / "progress.json"

    def cluster_dir(self, layer: str) -> Path:
        return self.root / "ClusterAnalysis" / layer

    def distances_npy(self, layer: str) -> Path:
        return self.cluster_dir(layer) / "distances.npy"

    def distances_xlsx(self, layer: str) -> Path:
        return self.cluster_dir(layer) / "distances.xlsx"

    def wicd_csv(self, layer: str) -> Path:
        return self.cluster_dir(layer) / "wicd.csv"

    def wicd_png(self, layer: str) -> Path:
        return self.cluster_dir(layer) / "wicd.png"

    def layer_clusters_csv(self, layer: str) -> Path:
        return self.cluster_dir(layer) / "clusters.csv"

    def cluster_images_dir(self, layer: str, cluster: str) -> Path:
        return self.cluster_dir(layer) / cluster

    def cluster_gif(self, layer: str, cluster: str) -> Path:
        return self.cluster_dir(layer) / f"{cluster}.gif"

    def cluster_sheet(self, layer: str, cluster: str) -> Path:
        return self.cluster_dir(layer) / f"{cluster}.png"

    def best_layer_dir(self, layer: str) -> Path:
        return self.root / layer

    @property
    def clusters_csv(self) -> Path:
        return self.root / "clusters.csv"

    def method_clusters_csv(self, method: str) -> Path:
        """The clusters of ``method``: ``clusters.csv`` for ``paper``, ``ClusterAnalysis/<method>/clusters.csv`` otherwise."""
        return self.clusters_csv if method == PAPER else self.layer_clusters_csv(method)

    @property
    def summary_csv(self) -> Path:
        return self.root / "summary.csv"

    @property
    def unsafe_dir(self) -> Path:
        return self.root / "UnsafeSet"

    def unsafe_cluster_dir(self, cluster: str) -> Path:
        return self.unsafe_dir / cluster

    @property
    def unsafe_csv(self) -> Path:
        return self.unsafe_dir / "unsafe.csv"

    @property
    def quotas_csv(self) -> Path:
        return self.unsafe_dir / "quotas.csv"

    @property
    def labels_csv(self) -> Path:
        return self.unsafe_dir / "labels.csv"

    @property
    def single_linkage_npy(self) -> Path:
        return self.unsafe_dir / "single_linkage.npy"

    @property
    def retrain_dir(self) -> Path:
        return self.root / "Retrain"

    @property
    def metrics_csv(self) -> Path:
        return self.retrain_dir / "metrics.csv"

    @property
    def doctor_dir(self) -> Path:
        """Model Doctor's diagnosis (``hudd doctor``)."""
        return self.root / "Doctor"

    def doctor_npy(self, layer: str) -> Path:
        """Raw class-by-channel aggregates of ``layer``, ``(n_classes, K)`` float32."""
        return self.doctor_dir / f"{layer}.npy"

    def doctor_csv(self, layer: str) -> Path:
        return self.doctor_dir / f"{layer}.csv"

    def doctor_png(self, layer: str) -> Path:
        return self.doctor_dir / f"{layer}.png"

    @property
    def doctor_layers_csv(self) -> Path:
        return self.doctor_dir / "layers.csv"

    @property
    def doctor_images_csv(self) -> Path:
        return self.doctor_dir / "images.csv"

    @property
    def doctor_diagnosis_csv(self) -> Path:
        return self.doctor_dir / "diagnosis.csv"

    @property
    def labels_backup(self) -> Path:
        """A copy of ``labels.csv`` taken before ``hudd assign`` reruns, so no label typed in is lost."""
        return self.root / "labels-backup.csv"

    @property
    def evaluation_csv(self) -> Path:
        return self.root / "evaluation.csv"

    @property
    def clusterings_csv(self) -> Path:
        """Every clustering in the workspace scored side by side (``hudd evaluate --compare``)."""
        return self.root / "clusterings.csv"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    # ---- manifest ------------------------------------------------------------------------
    def read_manifest(self) -> dict:
        """The manifest as a dict; a missing or unreadable one is empty (every step not done)."""
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"steps": {}}
        except (OSError, ValueError):
            print(f"hudd: warning: {self.manifest_path} is unreadable; every step will rerun", file=sys.stderr)
            return {"steps": {}}
        if not isinstance(data, dict) or not isinstance(data.get("steps"), dict):
            print(f"hudd: warning: {self.manifest_path} has no steps; every step will rerun", file=sys.stderr)
            return {"steps": {}}
        return data

    def _write_manifest(self, data: dict) -> None:
        write_text(self.manifest_path, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def step_entry(self, step: str) -> dict | None:
        entry = self.read_manifest()["steps"].get(step)
        return entry if isinstance(entry, dict) else None

    def is_current(self, step: str, fingerprint: str) -> bool:
        """True when ``step`` is recorded done with ``fingerprint`` and every recorded output exists."""
        entry = self.step_entry(step)
        if not entry or not entry.get("done") or entry.get("fingerprint") != fingerprint:
            return False
        return all((self.root / rel).exists() for rel in entry.get("outputs", []))

    def can_resume(self, step: str, fingerprint: str) -> bool:
        """True when ``step`` was started with this ``fingerprint`` and did not finish (a killed run)."""
        entry = self.step_entry(step)
        return bool(entry) and not entry.get("done") and entry.get("fingerprint") == fingerprint

    def start_step(self, step: str, fingerprint: str | None = None) -> None:
        """Mark ``step`` not done (started with ``fingerprint``), so its old outputs never look current.

        The old outputs stay on disk while the step runs, so a run stopped by bad input loses nothing
        already computed; :meth:`finish_step` deletes those the new run did not write again.
        """
        data = self.read_manifest()
        entry = data["steps"].get(step) or {}
        previous = entry.get("outputs", []) if entry.get("done") else entry.get("previous_outputs", [])
        data["steps"][step] = {"done": False, "started": _now(), "fingerprint": fingerprint, "previous_outputs": list(previous)}
        self._write_manifest(data)

    def finish_step(self, step: str, fingerprint: str, *, inputs: Mapping[str, str], outputs: Iterable[Path],
                    config: Mapping[str, Any] | None = None) -> None:
        """Record ``step`` done with its input fingerprint, inputs, the settings it ran with and its outputs
        (paths inside the workspace)."""
        data = self.read_manifest()
        entry = data["steps"].get(step) or {}
        outputs = sorted(str(Path(p).resolve().relative_to(self.root.resolve())) for p in outputs)
        for rel in entry.get("previous_outputs", []):
            if any(rel == out or out.startswith(f"{rel}/") or rel.startswith(f"{out}/") for out in outputs):
                continue
            target = self.root / rel
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
        data["steps"][step] = {
            "done": True,
            "fingerprint": fingerprint,
            "inputs": dict(inputs),
            "config": dict(config or {}),
            "outputs": outputs,
            "versions": _versions(),
            "started": entry.get("started", _now()),
            "finished": _now(),
        }
        self._write_manifest(data)

    def active_method(self) -> dict:
        """The clustering the case's root causes are read from: ``{"name", "requested", "note"}``.

        Recorded by ``hudd cluster`` / ``hudd analyze`` (:meth:`set_active_method`); a workspace
        without the record (made before methods existed, or by the paper's step alone) reads ``paper``.
        """
        record = self.read_manifest().get("method")
        if not isinstance(record, dict) or not record.get("name"):
            return {"name": PAPER, "requested": PAPER, "note": ""}
        return {"requested": record["name"], "note": "", **record}

    def set_active_method(self, name: str, *, requested: str, note: str = "") -> None:
        """Record ``name`` as the active clustering (``requested``: what the user asked for, e.g. the default)."""
        data = self.read_manifest()
        data["method"] = {"name": name, "requested": requested, "note": note}
        self._write_manifest(data)

    # ---- lock ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, command: str) -> Iterator[None]:
        """Hold the workspace lock for the duration; a second holder gets a HuddError naming the first.

        The lock is an ``flock`` on ``.lock``: the kernel releases it when the process dies, even
        by SIGKILL, so a killed run never blocks the next one.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fh = open(self.lock_path, "a+", encoding="utf-8")
        except OSError as exc:
            raise HuddError(f"{self.root}: cannot write to the workspace ({exc.strerror}); make it writable or choose another --workspace") from None
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another hudd process"
                raise HuddError(f"{self.root}: workspace is in use by {holder}; wait for it to finish or use another --workspace") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {socket.gethostname()} ({command}, started {_now()})")
            fh.flush()
            try:
                yield
            finally:
                fh.seek(0)
                fh.truncate()
                fcntl.flock(fh, fcntl.LOCK_UN)
        finally:
            fh.close()
