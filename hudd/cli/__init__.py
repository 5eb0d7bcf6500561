"""The ``hudd`` command line: the commands (:mod:`.commands`) and their option groups (:mod:`.options`); no torch at import."""

from .commands import cli, main

__all__ = ["cli", "main"]
