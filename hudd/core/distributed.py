"""One command as several processes under ``torchrun`` (torch.distributed): who is who, which rows are whose,
and how rank 0 hands work to the others.

Alone (no ``WORLD_SIZE`` above 1 in the environment) nothing here starts a process group or imports
``torch.distributed``: :func:`everywhere` just calls the function. Under ``torchrun`` every process
runs the same command; rank 0 runs the pipeline as a single process would (the workspace lock,
skipping current steps, clustering, every file but the rows the others compute) and the other ranks
wait for its tasks (:func:`serve`): at a heavy step rank 0 sends ``(function, arguments)`` to every
rank, each runs it on the rows that are its own, and rank 0 gathers what they return. Only small
control messages pass between processes (gloo, also beside NCCL on GPUs); the rows go through the
workspace files or come back as the function's result.

Rows are split at batch boundaries (:func:`plan_batches`), so every batch a rank computes is a batch a
single process would have computed: with the same batch size and the same number of threads per
process, the files are byte-identical to a one-process run's.
"""

from __future__ import annotations

import os
import sys
import traceback
from datetime import timedelta
from typing import Any, Callable, Sequence

from .errors import HuddError

__all__ = ["active", "world_size", "rank", "is_main", "init", "plan_batches", "rank_line", "rows_line", "everywhere", "serve", "release",
           "WorkerDone", "stop_for_test"]

_TIMEOUT = timedelta(days=7)  # a rank waits while rank 0 clusters, exports and reports: hours on a large case
_STATE: dict[str, Any] = {"control": None}
KILL_AFTER_BATCH = "HUDD_TEST_KILL_RANK_AFTER_BATCH"
"""Tests only: ``RANK`` or ``RANK:WHAT`` (say ``1:heatmaps``): that rank kills itself (SIGKILL) after its first batch of rows
(of ``WHAT``, a rows line's name, only)."""


class WorkerDone(Exception):
    """Raised on a rank other than 0 once rank 0 has finished the command: the command ends there, quietly."""


def world_size() -> int:
    """The number of processes running this command (``WORLD_SIZE``, set by torchrun; 1 alone)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def active() -> bool:
    """Whether this command runs as several processes."""
    return world_size() > 1


def rank() -> int:
    """This process's rank (0 alone)."""
    return int(os.environ.get("RANK", "0")) if active() else 0


def is_main() -> bool:
    """Rank 0: the one that holds the lock and writes every file but the rows of the others."""
    return rank() == 0


def init(device):
    """Join the process group (once per process) and return this rank's device: ``cuda:LOCAL_RANK`` for
    CUDA, else ``device`` unchanged. NCCL for CUDA devices, gloo for CPU; a gloo group beside NCCL carries
    the control messages. Alone: ``device``, nothing else."""
    if not active():
        return device
    import torch
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=_TIMEOUT)
        _STATE["control"] = dist.new_group(backend="gloo", timeout=_TIMEOUT) if device.type == "cuda" else None
    return device


def plan_batches(n: int, batch_size: int, parts: int, done: Sequence[tuple[int, int]] = ()) -> list[list[tuple[int, int]]]:
    """The row ranges ``[(start, stop), ...]`` of each of ``parts`` ranks: the batches of rows ``0..n`` not
    wholly inside a ``done`` range, split into ``parts`` runs of consecutive batches as even as whole batches
    allow. Every range starts at a multiple of ``batch_size``, so the batches are a single process's."""
    covered = bytearray(n)
    for start, stop in done:
        covered[max(start, 0):min(stop, n)] = b"\x01" * (min(stop, n) - max(start, 0))
    todo = [b for b in range(-(-n // batch_size)) if not all(covered[b * batch_size:min((b + 1) * batch_size, n)])]
    plans = []
    for part in range(parts):
        ranges: list[tuple[int, int]] = []
        for b in todo[len(todo) * part // parts:len(todo) * (part + 1) // parts]:
            start, stop = b * batch_size, min((b + 1) * batch_size, n)
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], stop)
            else:
                ranges.append((start, stop))
        plans.append(ranges)
    return plans


def rank_line(what: str, detail: str) -> None:
    """Under torchrun, one line on stderr: ``<what>: rank <r> of <world>: <detail>`` (what this rank computes)."""
    if active():
        sys.stderr.write(f"{what}: rank {rank()} of {world_size()}: {detail}\n")  # one write: lines of ranks never interleave
        sys.stderr.flush()


def rows_line(what: str, ranges: Sequence[tuple[int, int]]) -> None:
    """Under torchrun, one line on stderr saying which rows this rank computes for ``what``."""
    shown = ", ".join(f"{start}-{stop}" for start, stop in ranges) or "none"
    rank_line(what, f"rows {shown} ({sum(stop - start for start, stop in ranges)} rows)")


def _broadcast(message: Any) -> Any:
    import torch.distributed as dist

    box = [message]
    dist.broadcast_object_list(box, src=0, group=_STATE["control"])
    return box[0]


def _gather(result: Any) -> list | None:
    import torch.distributed as dist

    out = [None] * world_size() if is_main() else None
    dist.gather_object(result, out, dst=0, group=_STATE["control"])
    return out


def _call(fn: Callable, state: Any, args: tuple) -> tuple:
    try:
        return True, fn(state, *args)
    except HuddError as exc:
        return False, ("hudd", str(exc), exc)
    except Exception as exc:  # noqa: BLE001 - sent to rank 0, which raises it
        return False, ("other", "".join(traceback.format_exception(exc)), exc)


def everywhere(state: Any, fn: Callable, *args) -> list:
    """Run ``fn(state, *args)`` on every rank, each with its own ``state`` (its context), and return every
    rank's result in rank order (rank 0 only; the others are inside :func:`serve`). ``fn`` must be a
    module-level function and ``args`` picklable. A rank's HuddError is raised here, naming the rank.
    Alone: ``[fn(state, *args)]``."""
    if not active():
        return [fn(state, *args)]
    _broadcast((fn, args))
    ok, value = _call(fn, state, args)
    results = _gather((ok, None if ok else value[:2]))  # rank 0's own result stays here, unpickled
    if not ok:
        raise value[2]
    for r, (theirs_ok, theirs) in enumerate(results[1:], start=1):
        if not theirs_ok:
            if theirs[0] == "hudd":
                raise HuddError(f"rank {r}: {theirs[1]}")
            raise RuntimeError(f"rank {r} failed:\n{theirs[1]}")
    return [value] + [theirs for _, theirs in results[1:]]


def serve(state: Any) -> None:
    """Ranks other than 0: run rank 0's tasks (:func:`everywhere`) with ``state`` until it says the command is over."""
    while True:
        task = _broadcast(None)
        if task is None:
            _leave()
            return
        fn, args = task
        ok, value = _call(fn, state, args)
        _gather((ok, value[:2] if not ok else value))


def release() -> None:
    """Rank 0: tell the other ranks the command is over (they leave :func:`serve`)."""
    if active() and is_main():
        import torch.distributed as dist

        if dist.is_initialized():
            _broadcast(None)
            _leave()


def _leave() -> None:
    """Leave the process group once the command is over (NCCL warns about a group never destroyed)."""
    import torch.distributed as dist

    dist.destroy_process_group()
    _STATE["control"] = None


def stop_for_test(what: str) -> None:
    """Tests only: SIGKILL this process when :data:`KILL_AFTER_BATCH` names its rank (and ``what`` it computes)."""
    wanted = os.environ.get(KILL_AFTER_BATCH)
    if active() and wanted is not None and wanted in (str(rank()), f"{rank()}:{what}"):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
