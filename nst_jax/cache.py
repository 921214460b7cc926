"""The persistent compilation cache: each program compiles once per machine, not per run.

JAX writes every compiled program to a folder keyed by the program, the device and the
versions, and a later process with the same program loads it instead of compiling. The
folder is shared safely by several processes (entries are written under a file lock), and
a cache that cannot be read or written only costs a compile: one note, never a failure.

That cache keys on the lowered program, so a warm run would still trace and lower each
program. :func:`kept_program` keeps a run's programs compiled (serialized executables) in
``programs/`` beside it, keyed by what each is made of; a warm run loads them and skips
tracing, lowering and the cache's lookup.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import pickle
import platform
import re
import tempfile
import time
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Callable

import jax
import numpy as np
from jax.experimental.serialize_executable import deserialize_and_load, serialize

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
    _mend_access_times(folder)
    _notify_once_on_errors(folder, notify)
    PROGRAMS.update(folder=folder / "programs", notify=notify, said=False)
    return folder


def _mend_access_times(folder: Path) -> None:
    """Give each entry without its access-time file (written by a process with no size limit,
    or cut off between its two writes) the oldest time: JAX's eviction reads every entry's,
    and one missing fails every later write."""
    for entry in folder.glob("*-cache"):
        atime = entry.with_name(entry.name.removesuffix("-cache") + "-atime")
        if not atime.exists():
            try:
                atime.write_bytes(bytes(8))
            except OSError:
                pass  # then JAX's next write fails as before: one note


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


# The programs kept_program has compiled in this process, by key.
LOADED: dict[str, Callable] = {}
# Where kept_program keeps compiled programs (set by enable_cache; None: not kept), and whom it tells.
PROGRAMS: dict = {"folder": None, "notify": print, "said": False}
# JAX's options that cannot change a program (where files go, what is logged); every other one is in the key.
NOT_TRACING = ("cache", "log", "dump", "traceback", "pprint", "profile", "source_url", "timeout")
# The most bytes of programs the folder keeps (a 512 px default run's are ~6 MB); the least
# recently used go first.
MAX_PROGRAM_BYTES = 2**30
# A kept program's file name ends so.
SUFFIX = ".program"
# The event a program's loading is recorded as (beside JAX's for tracing, lowering, compiling).
LOAD_EVENT = "/nst_jax/kept_program_load_duration"
# A half-written entry older than this (its writer was killed) is let go.
STALE_SECONDS = 3600


def source_digest() -> str:
    """A digest of this package's source files as they are on disk now."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# The source this process imported (the package's modules are imported with this one or after it).
IMPORTED_SOURCE = source_digest()


@lru_cache(maxsize=1)
def machine() -> str:
    """The processor a compiled program's machine code is for: its architecture and, on Linux,
    a digest of its instruction set extensions (an AVX-512 program must not run on AVX2)."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()} {hashlib.sha256(flags.encode()).hexdigest()[:16]}"


@lru_cache(maxsize=1)
def library_versions() -> str:
    return " ".join(f"{name} {importlib.metadata.version(name)}" for name in ("jax", "jaxlib", "flax", "optax", "numpy"))


def kept_program(what: tuple, fun: Callable, args: tuple, out_tree, donate: int | None = None) -> Callable | None:
    """``fun(*args)`` compiled for ``args`` (pytrees of arrays) as ``jax.jit`` would, its
    result of structure ``out_tree`` (None: whatever the trace gives, kept with the program),
    through the folder of kept programs: loaded from it
    when this code made it before on this machine for the same ``what`` (everything ``fun``
    closes over, described by its repr), the same argument structure, shapes and dtypes and
    the same JAX options, else traced, compiled and written there. ``donate``: the index of
    an argument whose buffers the result may reuse. None (the caller compiles as usual)
    when the cache is off, ``what`` has no stable description, or the package's source
    changed on disk since it was imported; any entry or folder that cannot be used costs a
    compile and one note, never the run."""
    folder = PROGRAMS["folder"]
    described = repr(what)
    if folder is None or re.search(r" at 0x[0-9a-f]+", described):  # an object's address: not stable
        return None
    if jax.process_count() > 1:  # every process of a multi-process run must run the very same programs
        return None
    leaves, in_tree = jax.tree.flatten(args)
    if not all(isinstance(x, (jax.Array, np.ndarray)) and not isinstance(x, jax.core.Tracer) for x in leaves):
        return None  # inside another program (part of it), or Python values jit would take as they are
    try:
        key = program_key(described, in_tree, leaves, donate)
        if key in LOADED:
            return LOADED[key]
        if source_digest() != IMPORTED_SOURCE:  # this process's code is not what the key names
            return None
        program = _load_or_compile(folder / f"{key}{SUFFIX}", fun, in_tree, leaves, out_tree, args, donate)
    except Exception as e:  # noqa: BLE001 - the folder is a cache: the process goes on without it
        PROGRAMS["folder"] = None
        _tell(f"programs not kept ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})")
        return None
    LOADED[key] = program  # None too: a program that cannot be kept is not tried twice
    return program


def program_key(described: str, in_tree, leaves: list, donate: int | None) -> str:
    device = jax.devices()[0]
    options = sorted((k, repr(v)) for k, v in jax.config.values.items() if not any(w in k for w in NOT_TRACING))
    return hashlib.sha256(repr((
        described, str(in_tree),
        [(x.shape, str(x.dtype), bool(getattr(x, "weak_type", False)), str(getattr(x, "sharding", None)))
         for x in leaves],  # a program compiled for one placement of its arguments refuses others
        donate, device.platform, device.device_kind, len(jax.devices()), machine(), options, IMPORTED_SOURCE,
        library_versions())).encode()).hexdigest()[:40]


def _load_or_compile(path: Path, fun: Callable, in_tree, leaves: list, out_tree, args: tuple,
                   donate: int | None) -> Callable | None:
    """The compiled program of :func:`kept_program`: from ``path`` when it holds a usable one
    (a torn or foreign entry is replaced), else traced, compiled and written there."""
    first = sum(len(jax.tree.leaves(a)) for a in args[:donate]) if donate is not None else 0
    donated = tuple(range(first, first + len(jax.tree.leaves(args[donate])))) if donate is not None else ()
    # The compiled program takes and gives flat lists of arrays; the file keeps its result's structure.
    flat_in = jax.tree.structure((tuple(leaves), {}))
    compiled = None
    if path.exists():
        try:
            t0 = time.perf_counter()
            kept_tree, data = pickle.loads(path.read_bytes())
            if out_tree is not None and kept_tree != out_tree:
                raise ValueError(path.name)
            out_tree = kept_tree
            compiled = deserialize_and_load(data, flat_in, jax.tree.structure(list(range(out_tree.num_leaves))))
            jax.monitoring.record_event_duration_secs(LOAD_EVENT, time.perf_counter() - t0)
            if compiled.in_avals[0] != tuple(jax.typeof(x) for x in leaves):  # made for other arguments
                raise ValueError(path.name)
        except Exception:  # noqa: BLE001 - torn, or made for something else: compile again
            compiled = None
            _tell(f"a kept program in {path.parent} could not be used; compiling it again")
        else:
            try:
                os.utime(path)  # used: the last to go
            except OSError:
                pass  # a folder this process may read but not write
    if compiled is None:
        made = []

        def flat(*xs):
            out = fun(*jax.tree.unflatten(in_tree, xs))
            made.append(jax.tree.structure(out))
            return jax.tree.leaves(out)

        hits = _cache_hits[0]
        try:
            with _compiled_here():
                compiled = jax.jit(flat, donate_argnums=donated).lower(*leaves).compile()
        except Exception:  # noqa: BLE001 - the caller's own jit will say what is wrong
            return None
        if out_tree is not None and made[-1] != out_tree:  # the caller's structure is not the result's: not kept
            return None
        out_tree = made[-1]
        try:  # XLA:CPU cannot serialize again what it loaded from JAX's cache (it would not run)
            data = pickle.dumps((out_tree, serialize(compiled)[0])) if _cache_hits[0] == hits else None
        except Exception:  # noqa: BLE001 - e.g. a constant or a local class no file can hold: used, not kept
            data = None
        if data is not None:
            _write(path, data)

    def call(*arguments):
        return jax.tree.unflatten(out_tree, compiled(*jax.tree.leaves(arguments)))

    return call


_cache_hits = [0]
jax.monitoring.register_event_listener(
    lambda event, **_: _cache_hits.__setitem__(0, _cache_hits[0] + (event == "/jax/compilation_cache/cache_hits")))


@contextmanager
def _compiled_here():
    """Programs compiled meanwhile are not written to JAX's cache: a kept program is kept in
    its own file, and so never found there (see the note in _load_or_compile)."""
    option = "jax_persistent_cache_min_compile_time_secs"
    before = jax.config.values[option]
    jax.config.update(option, float("inf"))
    try:
        yield
    finally:
        jax.config.update(option, before)


def kept_or_jitted(what: tuple, fun: Callable, args: tuple, out_tree=None):
    """``fun(*args)`` (``fun`` jitted) through its kept program (:func:`kept_program`)
    where there is one: for a run's programs other than its steps, e.g. its targets'."""
    program = kept_program(what, fun, args, out_tree)
    return fun(*args) if program is None else program(*args)


def _write(path: Path, data: bytes) -> None:
    """``data`` to ``path`` whole or not at all (another process may be reading it); past
    MAX_PROGRAM_BYTES the least recently used entries are let go, and half-written ones of
    killed writers."""
    temporary = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".", suffix=".tmp", delete=False) as f:
            temporary = f.name
            f.write(data)
        os.replace(temporary, path)
    except OSError as e:
        _tell(f"cannot keep programs in {path.parent} ({e.strerror or e})")
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        return
    entries = sorted(path.parent.glob("[!.]*"), key=_used, reverse=True)  # the newest first
    sizes = np.cumsum([_size(p) for p in entries])
    stale = [p for p in path.parent.glob(".*.tmp") if _used(p) < time.time() - STALE_SECONDS]
    for old in [p for p, total in zip(entries, sizes) if total > MAX_PROGRAM_BYTES] + stale:
        try:
            old.unlink(missing_ok=True)
        except OSError:
            pass  # another process's to let go, or none's: the folder only grows


def _used(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:  # let go by another process meanwhile
        return 0.0


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tell(message: str) -> None:
    if not PROGRAMS["said"]:
        PROGRAMS["said"] = True
        PROGRAMS["notify"](f"compilation cache: {message}")
