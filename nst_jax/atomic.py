"""Atomic file writes: a temp file beside the target, renamed over it when complete."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


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
