"""Safe file operations: atomic writes, confined removal, folder swaps, free space, hashes.

Every write goes to a temporary name beside its target and is renamed into place, so an
interrupted run never leaves a half-written file that looks finished; a write that fails names
the file it was writing, never the temporary one. Every removal goes through :func:`remove`,
which refuses any path outside the folder it is confined to (an absolute path elsewhere, ``..``,
a symbolic link pointing out), so no bookkeeping file, however damaged, can make hudd delete
a user's data. :func:`replace` swaps a new file or folder in for the old one and removes the old
one only once the new one is in place.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import HuddError

__all__ = ["atomic_path", "write_text", "save_npy", "save_npz", "write_csv", "file_hash", "listing_hash",
           "remove", "replace", "require_space", "allocate", "sweep", "storage_error"]

_UMASK = os.umask(0)
os.umask(_UMASK)

_TMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # what atomic_path's mkstemp names look like
_OLD = ".old"  # suffix of a folder being replaced by :func:`replace`
_LOW_SPACE = 1 << 20


def storage_error(exc: OSError, path: Path) -> OSError:
    """``exc`` as an OSError naming ``path`` (the file being written); a short write without errno
    (numpy's ``tofile``) reads as a full disk when the disk is nearly full, else as an I/O error."""
    code = exc.errno
    if code is None:
        code = errno.ENOSPC if _free_bytes(Path(path).parent) < _LOW_SPACE else errno.EIO
    return OSError(code, os.strerror(code), str(path))


def _free_bytes(folder: Path) -> int:
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error delete it.

    An OSError about the temporary file (full disk, permissions) is re-raised naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise storage_error(exc, Path(exc.filename or path.parent)) from None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise storage_error(exc, path) from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename not in (None, str(tmp)):
            raise
        raise storage_error(exc, path) from None
    finally:
        remove(tmp, path.parent)


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
    resized files, not an in-place edit that keeps the byte count. File names are hashed as the
    bytes the file system holds, so a name that is not valid UTF-8 hashes too.
    """
    digest = hashlib.sha256()
    root = Path(root)
    for rel in sorted(relpaths):
        digest.update(os.fsencode(rel) + f"\t{(root / rel).stat().st_size}\n".encode())
    return digest.hexdigest()


def _confined(path: Path, root: Path) -> Path:
    """``path`` with its parent's links resolved; a HuddError unless it lies strictly inside ``root``."""
    root, path = Path(root), Path(path)
    inside = root.resolve()
    target = path.parent.resolve() / path.name
    if path.name in ("", ".", "..") or target == inside or not target.is_relative_to(inside):
        raise HuddError(f"{path}: outside {root}; hudd deletes only files inside its workspace, so it leaves this one alone "
                        f"(if a bookkeeping file such as manifest.json names it, correct that file)")
    return target


def remove(path: Path, root: Path) -> None:
    """Delete the file, link or folder tree ``path`` if it lies inside ``root``; a missing one is fine.

    The one removal function: it refuses (HuddError) a path outside ``root``, ``..`` included, and a
    path reached through a link that points out of ``root``; a link itself is removed, never followed.
    """
    target = _confined(Path(path), root)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)


def replace(new: Path, old: Path, root: Path) -> None:
    """Move ``new`` (a file or folder) to ``old``'s place inside ``root``; what was there is removed
    only after ``new`` is in place (a folder is first renamed aside to ``.<name>.old``, which
    :func:`sweep` puts back if the process dies between the two renames)."""
    old = _confined(Path(old), root)
    _confined(Path(new), root)
    old.parent.mkdir(parents=True, exist_ok=True)
    if not os.path.lexists(old) or not (old.is_dir() or Path(new).is_dir()):
        os.replace(new, old)
        return
    aside = old.with_name(f".{old.name}{_OLD}")
    remove(aside, root)
    os.rename(old, aside)
    os.rename(new, old)
    remove(aside, root)


def require_space(path: Path, nbytes: int) -> None:
    """An OSError (ENOSPC) naming ``path`` unless its file system has ``nbytes`` free."""
    if _free_bytes(Path(path).parent) < nbytes:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} ({nbytes / 2**20:.0f} MiB needed)", str(path))


def allocate(path: Path) -> None:
    """Reserve the disk blocks of a freshly created (sparse) file, so that writing it through a
    memory map cannot hit a full disk, which the kernel reports as SIGBUS, not as an error."""
    try:
        with open(path, "r+b") as fh:
            os.posix_fallocate(fh.fileno(), 0, os.fstat(fh.fileno()).st_size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return
        raise storage_error(exc, path) from None


def sweep(root: Path) -> None:
    """Tidy ``root`` after a killed run: delete temporary files of interrupted writes, and finish (or
    undo) a folder swap :func:`replace` was making. Call it holding the workspace lock."""
    root = Path(root)
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        for name in [*dirs, *names]:
            if _TMP.match(name):
                remove(here / name, root)
            elif name.startswith(".") and name.endswith(_OLD) and len(name) > len(_OLD) + 1:
                original = here / name[1:-len(_OLD)]
                if os.path.lexists(original):
                    remove(here / name, root)
                else:
                    os.rename(here / name, original)
        dirs[:] = [d for d in dirs if not d.startswith(".") and os.path.isdir(here / d)]
