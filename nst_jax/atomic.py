"""Atomic file writes: a temp file beside the target, renamed over it when complete; and
directories that a failed write does not leave behind."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


# What atomic_path's temp file adds to the name it writes: ".NAME.<8 random>.tmp".
TEMP_NAME_EXTRA = 14


def name_fits(dest: Path) -> bool:
    """Whether :func:`atomic_path` can write ``dest``: its temp file's name is within the
    nearest existing directory's limit on names."""
    existing = Path(os.path.abspath(Path(dest).parent))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    return len(os.fsencode(Path(dest).name)) + TEMP_NAME_EXTRA <= limit


@contextmanager
def atomic_path(dest: Path):
    """Yield a temp path in ``dest``'s directory; when the block succeeds, give it the
    permissions a normal new file would have (mkstemp makes 0600) and rename it over
    ``dest``. On failure the temp file is removed and ``dest`` is untouched."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@contextmanager
def created(directory: Path):
    """Create ``directory`` and its missing parents (OSError if that fails); if the block
    fails, remove again those it created that are still empty, so a failed command leaves
    no empty directory behind."""
    directory = Path(directory)
    missing, p = [], directory
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    directory.mkdir(parents=True, exist_ok=True)
    try:
        yield directory
    except BaseException:
        for d in missing:  # deepest first
            try:
                d.rmdir()
            except OSError:
                break
        raise
