"""The ``next:`` line every command ends with: the command to run next, with the flags that chose and fed the model.

A step command records those flags (:func:`carry_flags`: ``--model``, ``--workspace``, ``--arch``,
``--trust-model`` and the input convention's flags given on the command line) in click's context, so the
next command loads the same model the same way, in the same workspace.
"""

from __future__ import annotations

import shlex

import click

from ..config import Config, flag_of

__all__ = ["carry_flags", "next_line"]

_CARRIED_KEYS = ("workspace", "channels", "image_size", "normalize", "resize", "allow_weak_model")
_META = "hudd.carry"


def carry_flags(config: Config, model: str | None, arch: str | None, trust_model: bool) -> None:
    """Remember, for :func:`next_line`, the flags the next command needs to load and feed the model as this one did."""
    words = [*(["--model", model] if model else [])]
    for key in _CARRIED_KEYS:
        value = getattr(config, key)
        if config.sources.get(key) == "command line" and value is not False:
            words += [flag_of(key)] if value is True else [flag_of(key), str(value)]
    words += [*(["--arch", arch] if arch else []), *(["--trust-model"] if trust_model else [])]
    click.get_current_context().meta[_META] = words


def next_line(what: str, command: str | None = None, case: str | None = None, *args: str, carry: bool = True) -> None:
    """Print what to do next: ``next: <what>`` followed by the command and (unless ``carry`` is False: another
    model) the flags :func:`carry_flags` remembered."""
    line = f"next: {what}"
    if command is not None:
        carried = click.get_current_context().meta.get(_META, []) if carry else []
        words = ["hudd", command, case, *args, *carried]
        line += (": " if what else "") + shlex.join(words)
    click.echo(line)
