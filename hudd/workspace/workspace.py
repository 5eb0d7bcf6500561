"""The workspace (the original tool's folder "T"): every artifact path, atomic writes, manifest, lock.

No other module builds a path into the workspace. Layout (``<case>/HUDD/`` by default)::

    manifest.json            per step: done, input fingerprint, inputs, outputs, versions, times
    trainResult.csv, testResult.csv
    Heatmaps/<layer>.npy     (n_error_images, N, M) relevance; rows indexed by Heatmaps/images.csv
    ClusterAnalysis/<layer>/ distances.npy, distances.xlsx, wicd.csv, wicd.png, clusters.csv, C<i>/, C<i>.gif
    ClusterAnalysis/<method>/clusters.csv   a method's final clusters (paper: of its selected layers)
    summary.csv              the paper's per-layer clustering and the layer it selected
    clusters.csv             the active method's clusters (image, cluster, method)
    descriptions.csv, findings.csv, Properties/TestSet.csv   what each cluster's images have in common
    UnsafeSet/C<i>/, unsafe.csv, quotas.csv, labels.csv; labels-history.csv
    Retrain/metrics.csv, Retrain/comparison.csv
    evaluation.csv           clusters scored against the simulator's injected causes
    clusterings.csv          every clustering scored side by side (evaluate --compare)
    report.html

A step writes its new outputs under ``.staging/<step>/`` and swaps them in when it finishes
(:meth:`Workspace.commit`), so a step stopped by bad input or a crash loses nothing already
finished; files are written and removed only through :mod:`hudd.core.files`. A step is current when
the manifest records it done with the same input fingerprint and all its outputs exist.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from .. import __version__
from ..core.errors import HuddError
from ..core.files import remove, replace, sweep, write_text
from .lock import holding
from ..methods import PAPER

__all__ = ["Workspace", "fingerprint", "utc_now"]


def fingerprint(step: str, version: int, config: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """SHA-256 of canonical JSON of a step's name, version, the config keys it reads and its input hashes."""
    payload = {"step": step, "version": version, "config": dict(config), "inputs": dict(inputs)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second (the manifest's times)."""
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

    def __init__(self, root: Path, *, staged_for: str | None = None):
        self.root = Path(root)
        self.staged_for = staged_for  # the step whose new outputs this staging workspace holds

    @classmethod
    def of_case(cls, case_root: Path, folder: str = "HUDD", *, flag: str = "--workspace", base: Path | None = None) -> "Workspace":
        """The workspace of a case: ``folder`` relative to ``base`` (default the case folder), or an absolute path.

        A HuddError (naming ``flag``, where the folder was given) when the workspace would lie inside,
        or contain, the case's ``DataSets/`` or ``DNNModels/``: hudd writes and deletes in its workspace.
        """
        ws = cls(Path(base if base is not None else case_root) / folder)
        root = ws.root.resolve()
        for name in ("DataSets", "DNNModels"):
            guarded = (Path(case_root) / name).resolve()
            if root == guarded or root.is_relative_to(guarded) or guarded.is_relative_to(root):
                where = "lies inside" if root.is_relative_to(guarded) else "contains"
                raise HuddError(f"{flag} {folder}: the workspace {where} {Path(case_root) / name}, where hudd must not write; "
                                f"choose a folder of its own (the default is HUDD)")
        return ws

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
        """The active method's clusters (image, cluster, method), written when a method is made active."""
        return self.root / "clusters.csv"

    def method_clusters_csv(self, method: str) -> Path:
        """The final clusters of ``method``: ``ClusterAnalysis/<method>/clusters.csv`` (``paper``: its selected layers')."""
        return self.layer_clusters_csv(method)

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
    def labels_history(self) -> Path:
        """Every label ever typed into ``labels.csv`` (see :mod:`hudd.case.labels`); only appended to."""
        return self.root / "labels-history.csv"

    def properties_csv(self, split: str) -> Path:
        """Interpretable properties of every image of ``split`` (:mod:`hudd.describe.image_properties`)."""
        return self.root / "Properties" / f"{split}.csv"

    @property
    def descriptions_csv(self) -> Path:
        """Per cluster, the conditions that set its images apart (:mod:`hudd.describe.describe`)."""
        return self.root / "descriptions.csv"

    @property
    def findings_csv(self) -> Path:
        """One sentence per cluster, largest first."""
        return self.root / "findings.csv"

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

    # ---- staging -------------------------------------------------------------------------
    def staging(self, step: str, *, keep: bool = False) -> "Workspace":
        """``.staging/<step>/``, in this layout, for ``step``'s new outputs; emptied unless ``keep`` (resuming)."""
        staged = Workspace(self.root / ".staging" / step, staged_for=step)
        if not keep:
            remove(staged.root, self.root)
        staged.root.mkdir(parents=True, exist_ok=True)
        return staged

    def rows_staging(self, name: str) -> Path:
        """``.staging/rows/<name>/``: the rows folder (:mod:`hudd.core.rows`) where a step's per-image results wait,
        batch by batch, until the step has written its outputs; a killed run resumes from it."""
        return self.root / ".staging" / "rows" / name

    def commit(self, staged: "Workspace", outputs: Iterable[Path]) -> None:
        """Swap ``outputs`` (paths in this workspace) written in ``staged`` in for the old ones; then remove
        ``staged``. Until then the previous outputs are untouched: a step that stops loses nothing finished."""
        self.start_step(staged.staged_for)  # half swapped in, the outputs must not look current
        for final in outputs:
            new = staged.root / Path(final).relative_to(self.root)
            if os.path.lexists(new):
                replace(new, final, self.root)
        remove(staged.root, self.root)

    # ---- manifest ------------------------------------------------------------------------
    def read_manifest(self) -> dict:
        """The manifest as a dict (``{"steps": {}}`` when there is none); a HuddError when it is damaged."""
        try:
            raw = self.manifest_path.read_bytes()
        except FileNotFoundError:
            return {"steps": {}}
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise HuddError(f"{self.manifest_path}: not valid JSON ({exc}); restore it, or delete it to rerun every step") from None
        problem = _manifest_problem(data)
        if problem:
            raise HuddError(f"{self.manifest_path}: {problem}; correct it, or delete it to rerun every step")
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

    def start_step(self, step: str, fingerprint: str | None = None) -> None:
        """Mark ``step`` not done (started with ``fingerprint``), so its old outputs never look current.

        The old outputs stay on disk while the step runs, so a run stopped by bad input loses nothing
        already computed; :meth:`finish_step` deletes those the new run did not write again.
        """
        data = self.read_manifest()
        entry = data["steps"].get(step) or {}
        previous = entry.get("outputs", []) if entry.get("done") else entry.get("previous_outputs", [])
        data["steps"][step] = {"done": False, "started": utc_now(), "fingerprint": fingerprint, "previous_outputs": list(previous)}
        self._write_manifest(data)

    def finish_step(self, step: str, fingerprint: str, *, inputs: Mapping[str, str], outputs: Iterable[Path],
                    config: Mapping[str, Any] | None = None, started: str | None = None) -> None:
        """Record ``step`` done with its input fingerprint, inputs, the settings it ran with and its outputs
        (paths inside the workspace)."""
        data = self.read_manifest()
        entry = data["steps"].get(step) or {}
        outputs = sorted(str(Path(p).resolve().relative_to(self.root.resolve())) for p in outputs)
        for rel in entry.get("outputs" if entry.get("done") else "previous_outputs", []):
            if not any(rel == out or out.startswith(f"{rel}/") or rel.startswith(f"{out}/") for out in outputs):
                remove(self.root / rel, self.root)
        data["steps"][step] = {
            "done": True,
            "fingerprint": fingerprint,
            "inputs": dict(inputs),
            "config": dict(config or {}),
            "outputs": outputs,
            "versions": _versions(),
            "started": started or entry.get("started", utc_now()),
            "finished": utc_now(),
        }
        self._write_manifest(data)

    def active_method(self) -> dict:
        """The clustering the case's root causes are read from: ``{"name", "requested", "note"}``.

        Recorded by ``hudd analyze`` and ``hudd cluster`` (:meth:`set_active_method`); a workspace
        without the record (made before methods existed, or by the paper's step alone) reads ``paper``.
        """
        record = self.read_manifest().get("method")
        if not isinstance(record, dict) or not record.get("name"):
            return {"name": PAPER, "requested": PAPER, "note": ""}
        return {"requested": record["name"], "note": "", **record}

    def has_active_method(self) -> bool:
        """True when a clustering has been made the active one (the manifest records it)."""
        return isinstance(self.read_manifest().get("method"), dict)

    def set_active_method(self, name: str, *, requested: str, note: str = "") -> None:
        """Record ``name`` as the active clustering (``requested``: what the user asked for, e.g. the default)."""
        data = self.read_manifest()
        data["method"] = {"name": name, "requested": requested, "note": note}
        self._write_manifest(data)

    # ---- lock ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, command: str) -> Iterator[None]:
        """Hold the workspace lock (:func:`hudd.workspace.lock.holding`) and tidy what a killed run left behind."""
        with holding(self.root, self.lock_path, f"{command}, started {utc_now()}"):
            sweep(self.root)
            yield


def _manifest_problem(data: Any) -> str:
    """What is wrong with the structure of a parsed manifest, or ``""``."""
    if not isinstance(data, dict) or not isinstance(data.get("steps"), dict):
        return "not a hudd manifest (no \"steps\" table)"
    for step, entry in data["steps"].items():
        if not isinstance(entry, dict):
            return f"steps.{step} is not a table"
        if not isinstance(entry.get("done", False), bool) or not isinstance(entry.get("fingerprint", ""), (str, type(None))):
            return f"steps.{step}: done must be true or false and fingerprint a string"
        for key in ("inputs", "config"):
            if not isinstance(entry.get(key, {}), dict):
                return f"steps.{step}.{key} is not a table"
        for key in ("outputs", "previous_outputs"):
            paths = entry.get(key, [])
            if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
                return f"steps.{step}.{key} is not a list of paths"
            outside = [p for p in paths if Path(p).is_absolute() or ".." in Path(p).parts]
            if outside:
                return f"steps.{step}.{key} lists {outside[0]!r}, outside the workspace"
    method = data.get("method", {})
    if not isinstance(method, dict) or not all(isinstance(v, str) for v in method.values()):
        return "method is not a table of strings"
    return ""
