"""The persistent compilation cache: each program compiles once per machine, not per run.

JAX writes every compiled program to a folder keyed by the program, the device and the
versions, and a later process with the same program loads it instead of compiling. The
folder is shared safely by several processes (entries are written under a file lock), and
a cache that cannot be read or written only costs a compile: one note, never a failure.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Callable

import jax

# Where the cache lives unless NST_JAX_CACHE_DIR says otherwise; NST_JAX_NO_CACHE=1 turns it off.
ENV_DIR, ENV_OFF = "NST_JAX_CACHE_DIR", "NST_JAX_NO_CACHE"
# The most the folder may hold; the least recently used entries go first (a 512 px
# default run writes ~50 MB).
MAX_BYTES = 4 * 2**30
# JAX's own messages when an entry cannot be read or written.
CACHE_WARNINGS = r"Error (reading|writing) persistent compilation cache"


def cache_dir() -> Path:
    """``$NST_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/nst-jax/xla`` (``~/.cache/nst-jax/xla``)."""
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nst-jax" / "xla"


def cache_off() -> bool:
    return os.environ.get(ENV_OFF, "").strip().lower() not in ("", "0", "false", "no")


def enable_cache(folder: str | Path | None = None, notify: Callable[[str], object] = print) -> Path | None:
    """Turn on the persistent compilation cache in ``folder`` (default :func:`cache_dir`)
    and return it; None, with one ``notify`` line, when the folder cannot be made or
    written. Later read or write errors of single entries become one ``notify`` line (the
    program is compiled instead)."""
    folder = Path(folder) if folder is not None else cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        notify(f"compilation cache off: cannot write {folder} ({e.strerror or e})")
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)  # LRU eviction, under a file lock
    _notify_once_on_errors(folder, notify)
    return folder


def _notify_once_on_errors(folder: Path, notify: Callable[[str], object]) -> None:
    """JAX's warnings about a bad entry as one ``notify`` line for the whole process."""
    said = []

    def show(message, category, filename, lineno, file=None, line=None):
        if re.match(CACHE_WARNINGS, str(message)):
            if not said:
                said.append(True)
                notify(f"compilation cache: an entry in {folder} could not be used; compiling instead")
            return
        show.shown(message, category, filename, lineno, file, line)

    show.shown = getattr(warnings.showwarning, "shown", warnings.showwarning)  # once, however often called
    warnings.filterwarnings("always", message=CACHE_WARNINGS)
    warnings.showwarning = show
