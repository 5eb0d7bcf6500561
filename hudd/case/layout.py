"""The folders a case must have, checked without heavy imports (the CLI checks them before loading torch)."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import HuddError

__all__ = ["DATASETS", "require_dir", "require_datasets"]

DATASETS = "DataSets"


def require_dir(path: Path, what: str) -> None:
    """A HuddError naming ``path`` and ``what`` to do when ``path`` is not a folder."""
    if not Path(path).is_dir():
        raise HuddError(f"{path}: folder missing; {what}")


def require_datasets(case_root: Path) -> None:
    """The case's ``DataSets/`` folder exists."""
    require_dir(Path(case_root) / DATASETS,
                "a case folder holds DataSets/ with TrainingSet/, TestSet/ and ImprovementSet/ (see DataSets/README.md)")
