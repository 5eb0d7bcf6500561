"""What every step shares: the run context (case, config, workspace, model, device) and the
skip-or-run logic driven by input fingerprints.

A step is skipped when the manifest records it done with the same fingerprint (step name and
version, the config keys it reads, its input files' hashes) and its outputs exist; ``--force``
reruns it. A step replaces its old outputs only when it finishes; a resumable step killed mid-way
continues where it stopped when its fingerprint is unchanged.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator, Mapping

import torch

from ..models.case_model import open_case_model
from ..config import Config
from ..case.data import Case, SplitListing, list_split
from ..core.device import resolve_device
from ..models import LoadedModel
from ..core.progress import echo
from ..workspace.workspace import Workspace, fingerprint, utc_now
from ..core.files import file_hash, listing_hash

__all__ = ["Context", "open_context", "run_step"]


@dataclass
class Context:
    """Everything a step needs; built once per command by :func:`open_context`."""

    case: Case
    config: Config
    workspace: Workspace
    model: LoadedModel
    device: torch.device

    @cached_property
    def model_hash(self) -> str:
        return file_hash(self.model.path)

    @property
    def model_name(self) -> str:
        return self.model.path.name

    def listing(self, split: str, *, unlabelled_ok: bool = False) -> SplitListing:
        return list_split(self.case, split, spec=self.model.spec, model_name=self.model_name, unlabelled_ok=unlabelled_ok)

    def listing_hash(self, listing: SplitListing) -> str:
        return listing_hash(self.case.datasets, listing.ids)


@contextlib.contextmanager
def open_context(case_root: Path, config: Config, *, command: str, model: str | None = None, trust_model: bool = False,
                 arch: str | None = None) -> Iterator[Context]:
    """Load the case's model and hold the workspace lock while the command runs."""
    case = Case(Path(case_root))
    given_here = config.sources.get("workspace") == "command line"  # a flag is relative to the current folder, hudd.toml to the case
    workspace = Workspace.of_case(case.root, config.workspace, flag=config.where("workspace"), base=Path.cwd() if given_here else None)
    loaded = open_case_model(case, model, trust_model=trust_model, arch=arch)
    device = resolve_device(config.device, config.where("device"))
    with workspace.locked(command):
        yield Context(case=case, config=config, workspace=workspace, model=loaded, device=device)


def run_step(ctx: Context, step: str, version: int, *, config: Mapping, inputs: Mapping[str, str],
             compute: Callable[[str, bool], list[Path]], force: bool = False, staged: bool = False) -> bool:
    """Run ``compute(fingerprint, resume)`` unless the step is current; record it done. Returns True if it ran.

    ``compute`` returns the output paths; ``resume`` is False under ``--force`` (a resumable step
    must then start over). A ``staged`` step writes into ``ws.staging(step)`` and commits at its end,
    so its old outputs stay whole and current until then; any other step is marked not done while
    it runs, so its old outputs never look current after it stopped half way.
    """
    ws = ctx.workspace
    fp = fingerprint(step, version, config, inputs)
    if not force and ws.is_current(step, fp):
        echo(f"{step}: inputs unchanged, skipping")
        return False
    started = utc_now()
    if not staged:
        ws.start_step(step, fp)
    outputs = compute(fp, not force)
    ws.finish_step(step, fp, inputs=inputs, outputs=outputs, config=config, started=started)
    return True
