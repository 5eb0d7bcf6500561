"""Progress bars for every long loop: tqdm on stderr, off with ``--quiet`` or when not a TTY."""

import sys

from tqdm.auto import tqdm

__all__ = ["progress", "set_quiet", "echo", "note"]

_QUIET = False


def set_quiet(quiet: bool) -> None:
    """Silence progress bars and informational messages for the rest of the process."""
    global _QUIET
    _QUIET = bool(quiet)


def progress(iterable=None, *, desc: str | None, total: int | None = None, unit: str = "it", leave: bool = False):
    """Wrap ``iterable`` in a tqdm bar on stderr, disabled when quiet, when stderr is not a terminal, or without ``desc``
    (a loop that runs in step with another one, which shows the bar)."""
    disable = _QUIET or desc is None or not sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave, disable=disable, file=sys.stderr, dynamic_ncols=True)


def echo(message: str) -> None:
    """Print an informational line on stderr unless quiet (results go to stdout, chatter here)."""
    if not _QUIET:
        print(message, file=sys.stderr, flush=True)


def note(message: str) -> None:
    """Print ``note: message`` on stderr even when quiet: a result that differs from what was asked
    (a fallback, a skipped input) must reach the log of a batch job."""
    print(f"note: {message}", file=sys.stderr, flush=True)
