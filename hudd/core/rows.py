"""Rows computed batch by batch into ``.npy`` files that a killed run resumes from: the one resume kernel of the
heatmaps, ``hudd test``, the feature extraction and ``hudd assign``.

A *rows folder* holds one ``<name>.npy`` per output (row i of every file is the i-th image's; a step may
allocate them itself, else the first batch written sizes them) and the records of the row ranges finished:
``progress.json`` (alone, or rank 0's under torchrun) and ``progress-<rank>.json`` (each other rank's). After
each batch is written and flushed, :func:`fill` records the ranges its process has finished, with the
fingerprint of what it computes (the step's inputs and settings, the batch size included). A rerun with the
same fingerprint merges every record (:func:`resume`) and plans only the batches no process finished
(:func:`hudd.core.distributed.plan_batches` with ``done``). Batches keep their boundaries, so the files end
byte-identical to an uninterrupted run's, whatever the number of processes of either run.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
from numpy.lib.format import open_memmap

from . import distributed
from .files import allocate, remove, storage_error, write_text
from .progress import echo

__all__ = ["Batches", "merged", "record", "records", "resume", "fill", "load", "drop"]

RECORD = "progress.json"

Batches = Callable[[int, int], Iterator[Mapping[str, np.ndarray]]]
"""``batches(start, stop)``: for each batch of rows ``start..stop``, in order, the batch's rows of every output
(``{name: (b, ...) array}``)."""


def merged(ranges) -> list[tuple[int, int]]:
    """Row ranges sorted, touching ones joined."""
    joined: list[tuple[int, int]] = []
    for start, stop in sorted((int(a), int(b)) for a, b in ranges):
        if joined and start <= joined[-1][1]:
            joined[-1] = (joined[-1][0], max(stop, joined[-1][1]))
        else:
            joined.append((start, stop))
    return joined


def _record_path(folder: Path, rank: int) -> Path:
    return folder / (RECORD if rank == 0 else f"progress-{rank}.json")


def record(path: Path, fingerprint: str, ranges) -> None:
    """The row ranges finished (and their count, ``rows_done``), for a killed run to resume from."""
    done = merged(ranges)
    write_text(path, json.dumps({"fingerprint": fingerprint, "rows_done": sum(b - a for a, b in done), "done": done}))


def records(folder: Path) -> list[Path]:
    """``progress.json`` (first) and the other ranks' ``progress-<rank>.json`` that exist in ``folder``."""
    folder = Path(folder)
    main = [folder / RECORD] if (folder / RECORD).is_file() else []
    return main + sorted(folder.glob("progress-*.json")) if folder.is_dir() else main


def resume(folder: Path, root: Path, fingerprint: str, what: str, n: int, names: Sequence[str] = ()) -> list[tuple[int, int]]:
    """The row ranges that killed runs with the same ``fingerprint`` finished in ``folder`` (none when ``names``,
    the arrays that must be there, are not all there): merged into ``progress.json``, the other records removed
    (``root``: the workspace), and said in one line. None: start over."""
    folder = Path(folder)
    if not all((folder / f"{name}.npy").is_file() for name in names):
        return []
    done = []
    for path in records(folder):
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
            if state.get("fingerprint") == fingerprint:
                done += [(int(a), int(b)) for a, b in state["done"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    done = merged(done)
    if done:
        record(folder / RECORD, fingerprint, done)
        for path in records(folder)[1:]:
            remove(path, root)
        echo(f"{what}: resuming: {sum(b - a for a, b in done)} of {n} rows were computed by an earlier run")
    return done


def _open(folder: Path, name: str, n: int, first: np.ndarray) -> np.memmap:
    """``folder/<name>.npy`` for ``n`` rows like ``first``'s, created (disk space reserved) when it is not there yet;
    when processes race to create it, the first one wins and the others open its file."""
    path = folder / f"{name}.npy"
    if not path.is_file():
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)  # a name files.sweep knows
        os.close(fd)
        try:
            array = open_memmap(tmp, mode="w+", dtype=first.dtype, shape=(n, *first.shape[1:]))
            del array
            allocate(Path(tmp))
            os.link(tmp, path)
        except FileExistsError:
            pass
        except OSError as exc:
            raise storage_error(exc, path) from None
        finally:
            os.unlink(tmp)
    return open_memmap(path, mode="r+")


def fill(folder: Path, fingerprint: str, ranges: Sequence[tuple[int, int]], done: Sequence[tuple[int, int]], batches: Batches,
         n: int, what: str) -> None:
    """Compute this process's ``ranges`` of ``n`` rows with ``batches`` into ``folder``, recording after each flushed
    batch the ranges finished (alone or rank 0: in ``progress.json``, with the ``done`` ones of earlier runs; another
    rank in ``progress-<rank>.json``)."""
    folder = Path(folder)
    me = distributed.rank()
    path = _record_path(folder, me)
    finished = list(done) if me == 0 else []
    arrays: dict[str, np.memmap] = {}
    for start, stop in ranges:
        row = start
        for batch in batches(start, stop):
            size = len(next(iter(batch.values())))
            for name, values in batch.items():
                if name not in arrays:
                    arrays[name] = _open(folder, name, n, values)
                arrays[name][row:row + size] = values
            for array in arrays.values():
                array.flush()
            finished.append((row, row + size))
            row += size
            record(path, fingerprint, finished)
            distributed.stop_for_test(what)
    arrays.clear()


def load(folder: Path) -> dict[str, np.ndarray]:
    """Every ``<name>.npy`` of ``folder``, read into memory."""
    return {path.stem: np.load(path) for path in sorted(Path(folder).glob("*.npy"))}


def drop(folder: Path, root: Path) -> None:
    """Remove the rows ``folder`` (its step's outputs are written) and its parent once empty (other steps' rows may
    still wait there); nothing outside ``root`` (the workspace)."""
    remove(folder, root)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()
