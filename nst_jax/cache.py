"""The persistent compilation cache: each program compiles once per machine, not per run.

JAX writes every compiled program to a folder keyed by the program, the device and the
versions, and a later process with the same program loads it instead of compiling. The
folder is shared safely by several processes (entries are written under a file lock), and
a cache that cannot be read or written only costs a compile: one note, never a failure.

That cache keys on the lowered program, so a warm run still traces and lowers each step.
:func:`kept_program` keeps the step's traced program too (``jax.export``), in ``programs/``
beside it, keyed by what the step is made of; a warm run then skips both.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import tempfile
import warnings
from functools import lru_cache
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
    PROGRAMS.update(folder=folder / "programs", notify=notify, said=False)
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


# Where kept_program keeps traced programs (set by enable_cache; None: not kept), and whom it tells.
PROGRAMS: dict = {"folder": None, "notify": print, "said": False}
# JAX's options that change what a traced program is.
TRACING_OPTIONS = ("jax_enable_x64", "jax_default_matmul_precision", "jax_numpy_dtype_promotion",
                   "jax_numpy_rank_promotion", "jax_default_prng_impl")
# The most programs the folder keeps (each ~0.1 MB); the least recently written go first.
MAX_PROGRAMS = 1000


@lru_cache(maxsize=1)
def code_version() -> str:
    """A digest of this package's source and of the libraries a traced step depends on:
    a kept program is used only by the code that made it."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    for name in ("jax", "jaxlib", "flax", "optax", "numpy"):
        digest.update(f"{name} {importlib.metadata.version(name)}".encode())
    return digest.hexdigest()


def kept_program(what: tuple, fun: Callable, args: tuple, out_tree, donate: int | None = None) -> Callable | None:
    """``fun(*args)`` compiled for ``args`` (pytrees of arrays) as ``jax.jit`` would, its
    result of structure ``out_tree``, through the folder of traced programs: loaded from it
    when this code made it before on this device for the same ``what`` (everything ``fun``
    closes over, described by its repr) and the same argument shapes, else traced, lowered
    and written there. ``donate``: the index of an argument whose buffers the result may
    reuse. None (the caller compiles as usual) when the cache is off or ``what`` has no
    stable description; an entry that cannot be read or written costs a trace and one note."""
    folder = PROGRAMS["folder"]
    described = repr(what)
    if folder is None or re.search(r" at 0x[0-9a-f]+", described):  # an object's address: not stable
        return None
    leaves, in_tree = jax.tree.flatten(args)
    device = jax.devices()[0]
    tracing = [getattr(jax.config, name) for name in TRACING_OPTIONS]
    key = hashlib.sha256(repr((described, str(in_tree), [(x.shape, str(x.dtype)) for x in leaves], donate,
                               device.platform, device.device_kind, len(jax.devices()), tracing, code_version())
                              ).encode()).hexdigest()[:40]
    path = folder / f"{key}.jaxexport"
    exported = None
    if path.exists():
        try:
            exported = jax.export.deserialize(bytearray(path.read_bytes()))
        except Exception:  # noqa: BLE001 - a torn or foreign file: trace again
            _tell(f"a traced program in {folder} could not be read; tracing it again")
    if exported is None:
        def flat(*xs):
            return jax.tree.leaves(fun(*jax.tree.unflatten(in_tree, xs)))

        try:
            exported = jax.export.export(jax.jit(flat))(*leaves)
        except Exception:  # noqa: BLE001 - e.g. a host callback, which no program file can hold
            return None
        if len(exported.out_avals) != out_tree.num_leaves:
            return None
        _write(path, exported.serialize())
    first = sum(len(jax.tree.leaves(a)) for a in args[:donate]) if donate is not None else 0
    donated = tuple(range(first, first + len(jax.tree.leaves(args[donate])))) if donate is not None else ()
    compiled = jax.jit(exported.call, donate_argnums=donated).lower(*leaves).compile()

    def call(*arguments):
        return jax.tree.unflatten(out_tree, compiled(*jax.tree.leaves(arguments)))

    return call


def _write(path: Path, data: bytes) -> None:
    """``data`` to ``path`` whole or not at all (another process may be reading it), the
    oldest entries let go past MAX_PROGRAMS."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".", suffix=".tmp", delete=False) as f:
            temporary = f.name
            f.write(data)
        os.replace(temporary, path)
    except OSError as e:
        _tell(f"cannot keep traced programs in {path.parent} ({e.strerror or e})")
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        return
    entries = sorted(path.parent.glob("*.jaxexport"), key=_written)
    for old in entries[:max(0, len(entries) - MAX_PROGRAMS)]:
        try:
            old.unlink(missing_ok=True)
        except OSError:
            pass  # another process's to let go, or none's: the folder only grows


def _written(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # let go by another process meanwhile
        return 0.0


def _tell(message: str) -> None:
    if not PROGRAMS["said"]:
        PROGRAMS["said"] = True
        PROGRAMS["notify"](f"compilation cache: {message}")
