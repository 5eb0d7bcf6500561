"""The workspace lock: one hudd process at a time per workspace, released by the kernel even when the
holder is killed (an ``flock``), with the holder's description for the one who has to wait."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from ..core.errors import HuddError

__all__ = ["holding"]


@contextlib.contextmanager
def holding(root: Path, lock_path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (in the folder ``root``, created if needed) while the block
    runs, recording ``pid ... on <host> (<what>)`` in it; a HuddError naming the holder when it is taken."""
    try:
        Path(root).mkdir(parents=True, exist_ok=True)
        fh = open(lock_path, "a+", encoding="utf-8")
    except OSError as exc:
        raise HuddError(f"{root}: cannot write to the workspace ({exc.strerror}); make it writable or choose another --workspace") from None
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another hudd process"
            raise HuddError(f"{root}: workspace is in use by {holder}; wait for it to finish or use another --workspace") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} ({what})")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)
    finally:
        fh.close()
