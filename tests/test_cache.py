"""The persistent compilation cache: a second run loads what the first compiled; a cache
that cannot be used costs a compile and one note, never the run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from nst_jax.cache import SUFFIX, cache_dir, cache_off
from nst_jax.image import load_image, save_image


def images(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    content, style = tmp_path / "c.png", tmp_path / "s.png"
    save_image(rng.uniform(size=(40, 36, 3)), content)
    save_image(rng.uniform(size=(36, 40, 3)), style)
    return content, style


def run(tmp_path: Path, cache, *extra, env=None) -> subprocess.CompletedProcess:
    content, style = images(tmp_path)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "NST_JAX"))}
    environ.update({"NST_JAX_CACHE_DIR": str(cache), **(env or {})})
    command = [sys.executable, "-m", "nst_jax", *extra, "stylize", str(content), str(style),
               "-o", str(tmp_path / "out.png"), "--size", "40", "--steps", "2", "--scales", "none",
               "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_1"]
    return subprocess.run(command, env=environ, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def entries(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*-cache")}


def compile_seconds(stdout: str) -> float:
    return float(re.search(r"compile ([0-9.]+) s", stdout).group(1))


@pytest.mark.slow
def test_a_second_run_loads_every_program_from_the_cache(tmp_path):
    """A second run compiles nothing: it finds JAX's entries and loads the programs the first
    kept, writing none again, and paints the first's picture bit for bit, as a run with the
    cache off does. Entries without their access-time file (written by a process with no
    size limit, or cut off between its two writes) do not stop new ones being written."""
    cache, out = tmp_path / "cache", tmp_path / "out.png"
    first = run(tmp_path, cache)
    assert first.returncode == 0, first.stderr
    written = entries(cache)
    assert written  # the step, the targets' forward passes, the init
    kept = {p.name: p.stat().st_ino for p in (cache / "programs").glob(f"*{SUFFIX}")}
    assert len(kept) == 4  # one scale: its step, its first state, its style Grams, its content targets
    picture = load_image(out)
    second = run(tmp_path, cache)
    assert second.returncode == 0, second.stderr
    assert entries(cache) == written  # every program was found: nothing new compiled
    assert {p.name: p.stat().st_ino for p in (cache / "programs").glob(f"*{SUFFIX}")} == kept  # none written again
    assert not [line for line in second.stderr.splitlines() if line.startswith("note:")
                and not line.startswith("note: balance:")]  # nothing said about the cache
    assert compile_seconds(second.stdout) < compile_seconds(first.stdout)
    np.testing.assert_array_equal(load_image(out), picture)
    for atime in cache.glob("*-atime"):
        atime.unlink()
    sorted(cache.glob("*-cache"))[0].unlink()  # one program to compile and write again
    shutil.rmtree(cache / "programs")
    third = run(tmp_path, cache)
    assert third.returncode == 0 and "compilation cache" not in third.stderr, third.stderr
    assert entries(cache) == written
    assert run(tmp_path, cache, "--no-cache").returncode == 0
    np.testing.assert_array_equal(load_image(out), picture)


def test_a_corrupt_cache_costs_a_compile_and_one_note(tmp_path):
    cache = tmp_path / "cache"
    assert run(tmp_path, cache).returncode == 0
    for entry in cache.glob("*-cache"):
        entry.write_bytes(b"not a compiled program")
    again = run(tmp_path, cache)
    assert again.returncode == 0, again.stderr
    notes = [line for line in again.stderr.splitlines() if "compilation cache" in line]
    assert len(notes) == 1 and notes[0].startswith("note: compilation cache: an entry in")
    assert "Traceback" not in again.stderr and "Warning" not in again.stderr
    assert (tmp_path / "out.png").is_file()


def test_an_unwritable_cache_folder_is_one_note(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, so nothing can be created below it")
    result = run(tmp_path, blocker / "cache")
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("note: compilation cache off: cannot write") == 1
    assert (tmp_path / "out.png").is_file()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_the_cache_can_be_turned_off(tmp_path, how):
    cache = tmp_path / "cache"
    result = run(tmp_path, cache, *(["--no-cache"] if how == "flag" else []),
                 env={"NST_JAX_NO_CACHE": "1"} if how == "environment" else None)
    assert result.returncode == 0, result.stderr
    assert not cache.exists()


def test_where_the_cache_lives(monkeypatch, tmp_path):
    monkeypatch.delenv("NST_JAX_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_dir() == tmp_path / "nst-jax" / "xla"
    monkeypatch.setenv("NST_JAX_CACHE_DIR", str(tmp_path / "here"))
    assert cache_dir() == tmp_path / "here"
    for value, off in [("", False), ("0", False), ("no", False), ("1", True), ("yes", True)]:
        monkeypatch.setenv("NST_JAX_NO_CACHE", value)
        assert cache_off() is off


@pytest.mark.slow
def test_the_video_command_uses_it_too(tmp_path):
    """``nst-jax video`` fills the cache as ``stylize`` does, and ``--no-cache`` leaves it empty."""
    content, style = images(tmp_path)
    frames = tmp_path / "clip"
    frames.mkdir()
    for i in range(2):
        (frames / f"{i}.png").write_bytes(content.read_bytes())
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_", "NST_JAX"))}
    for extra, cache in (([], tmp_path / "cache"), (["--no-cache"], tmp_path / "none")):
        command = [sys.executable, "-m", "nst_jax", *extra, "video", str(frames), str(style), "-o",
                   str(tmp_path / f"out{len(extra)}"), "--size", "40", "--first-steps", "2", "--steps", "1",
                   "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_1"]
        done = subprocess.run(command, env={**environ, "NST_JAX_CACHE_DIR": str(cache)}, capture_output=True,
                              text=True, timeout=300, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert bool(entries(cache)) == (not extra), sorted(cache.glob("*"))


def test_a_runs_compile_seconds_count_its_preparation_too(vgg16_weights, monkeypatch):
    """The compile time a run reports covers every program it makes: the targets' forward
    passes of each scale as well as the step's."""
    from conftest import CONTENT, STYLE, tiny
    from nst_jax import run as run_module

    spans = {"prepare": 0.0, "drive": 0.0}

    def timed(name, function):
        def call(*args, **kwargs):
            before = run_module.compile_clock()
            try:
                return function(*args, **kwargs)
            finally:
                spans[name] += run_module.compile_clock() - before
        return call

    monkeypatch.setattr(run_module, "prepare", timed("prepare", run_module.prepare))
    monkeypatch.setattr(run_module, "drive", timed("drive", run_module.drive))
    result = run_module.stylize(CONTENT, STYLE, tiny(size=37, steps=2), weights=vgg16_weights)  # a shape of its own
    assert spans["prepare"] > 0 and spans["drive"] > 0
    assert result.compile_seconds >= spans["prepare"] + spans["drive"]
    assert result.seconds > result.compile_seconds


@pytest.fixture
def kept_in(tmp_path, monkeypatch):
    """kept_program's folder in tmp_path (as enable_cache sets it), its notes collected."""
    from nst_jax import cache

    notes = []
    monkeypatch.setattr(cache, "LOADED", {})
    monkeypatch.setitem(cache.PROGRAMS, "folder", tmp_path / "programs")
    monkeypatch.setitem(cache.PROGRAMS, "notify", notes.append)
    monkeypatch.setitem(cache.PROGRAMS, "said", False)
    return tmp_path / "programs", notes


class State(NamedTuple):
    x: object
    n: object


def kept_step(state_type=State):
    """A small function of NamedTuple pytrees, as a step is: (state, data) -> (state, metrics)."""
    import jax.numpy as jnp

    State = state_type

    def step(state, data):
        x = jnp.tanh(state.x @ data["w"]) + data["b"]
        return State(x, state.n + 1), {"loss": jnp.sum(x**2)}

    state = State(jnp.linspace(-1, 1, 12, dtype=jnp.float32).reshape(3, 4), jnp.zeros((), jnp.int32))
    data = {"w": jnp.eye(4, dtype=jnp.float32) * 0.5, "b": jnp.ones((4,), jnp.float32)}
    return step, state, data


def test_a_kept_program_is_the_jitted_one_and_the_next_process_loads_it(kept_in, monkeypatch):
    import jax

    from nst_jax import cache
    from nst_jax.cache import kept_program
    from nst_jax.run import compile_clock

    folder, notes = kept_in
    step, state, data = kept_step()
    want = jax.jit(step)(state, data)
    out_tree = jax.tree.structure(want)
    first = kept_program(("step", 1), step, (state, data), out_tree)
    np.testing.assert_array_equal(first(state, data)[0].x, want[0].x)
    assert first(state, data)[0].n == 1 and float(first(state, data)[1]["loss"]) == float(want[1]["loss"])
    assert len(list(folder.glob(f"*{SUFFIX}"))) == 1 and not notes

    traced = []

    def counted(*args):  # called only while a program is traced
        traced.append(1)
        return step(*args)

    monkeypatch.setattr(cache, "LOADED", {})  # as a new process: only the file
    before = compile_clock()
    again = kept_program(("step", 1), counted, (state, data), out_tree)
    assert compile_clock() > before  # loading it counts as making it
    np.testing.assert_array_equal(again(state, data)[0].x, want[0].x)
    assert not traced
    kept_program(("step", 2), counted, (state, data), out_tree)  # another description: another program
    assert len(traced) == 1
    kept_program(("step", 1), counted, (state._replace(x=state.x[:2]), data), out_tree)  # other shapes too
    assert len(traced) == 2 and len(list(folder.glob(f"*{SUFFIX}"))) == 3


def test_a_kept_program_donates_what_it_is_told(kept_in):
    import jax

    from nst_jax import cache
    from nst_jax.cache import kept_program

    step, state, data = kept_step()
    out_tree = jax.tree.structure(jax.eval_shape(step, state, data))
    for _ in ("compiled", "loaded"):
        program = kept_program(("donating",), step, (state, data), out_tree, donate=0)
        copy = jax.device_put(state, may_alias=False)
        program(copy, data)
        assert copy.x.is_deleted() and not data["w"].is_deleted()
        cache.LOADED.clear()  # as a new process: from the file


def test_a_torn_or_unwritable_program_file_costs_a_trace_and_one_note(kept_in):
    import jax

    from nst_jax import cache
    from nst_jax.cache import kept_program

    folder, notes = kept_in
    step, state, data = kept_step()
    out_tree = jax.tree.structure(jax.eval_shape(step, state, data))
    kept_program(("torn",), step, (state, data), out_tree)
    (entry,) = folder.glob(f"*{SUFFIX}")
    entry.write_bytes(entry.read_bytes()[:100])
    cache.LOADED.clear()  # as a new process
    program = kept_program(("torn",), step, (state, data), out_tree)
    np.testing.assert_array_equal(program(state, data)[0].x, jax.jit(step)(state, data)[0].x)
    assert len(notes) == 1 and "could not be used" in notes[0]
    assert entry.stat().st_size > 100  # written again, whole
    small = state._replace(x=state.x[:2])  # a whole program, but made for other shapes
    kept_program(("torn",), step, (small, data), out_tree)
    (other,) = set(folder.glob(f"*{SUFFIX}")) - {entry}
    entry.write_bytes(other.read_bytes())
    cache.LOADED.clear()
    program = kept_program(("torn",), step, (state, data), out_tree)
    np.testing.assert_array_equal(program(state, data)[0].x, jax.jit(step)(state, data)[0].x)
    for path in folder.glob(f"*{SUFFIX}"):
        path.unlink()
    folder.rmdir()
    folder.write_text("a file where the folder should be")
    program = kept_program(("unwritable",), step, (state, data), out_tree)
    np.testing.assert_array_equal(program(state, data)[0].x, jax.jit(step)(state, data)[0].x)
    assert len(notes) == 1  # once per process
    assert not list(folder.parent.glob(".*.tmp"))


def test_what_changes_a_kept_program_changes_its_key(kept_in, monkeypatch):
    """JAX's options, weak types, the processor and the code itself: each a program of its own, or none."""
    import jax
    import jax.numpy as jnp

    from nst_jax import cache

    folder, _ = kept_in
    step, state, data = kept_step()
    out_tree = jax.tree.structure(jax.eval_shape(step, state, data))
    cache.kept_program(("step",), step, (state, data), out_tree)
    with jax.default_matmul_precision("highest"):
        cache.kept_program(("step",), step, (state, data), out_tree)
    weak = state._replace(n=jnp.asarray(0))  # a weakly typed int32 where the first had a strong one
    assert weak.n.weak_type and weak.n.dtype == state.n.dtype
    cache.kept_program(("step",), step, (weak, data), out_tree)
    monkeypatch.setattr(cache, "machine", lambda: "another processor")  # e.g. a home folder shared by two machines
    cache.kept_program(("step",), step, (state, data), out_tree)
    assert len(list(folder.glob(f"*{SUFFIX}"))) == 4
    monkeypatch.setattr(cache, "LOADED", {})
    monkeypatch.setattr(cache, "source_digest", lambda: "the files changed since this process imported them")
    assert cache.kept_program(("step",), step, (state, data), out_tree) is None


def test_a_result_of_another_structure_than_the_callers_is_not_kept(kept_in):
    import jax

    from nst_jax import cache

    folder, _ = kept_in
    step, state, data = kept_step()
    same_count = jax.tree.structure(((0, 0), 0))  # three leaves, as the step's, in another shape
    assert cache.kept_program(("step",), step, (state, data), same_count) is None
    assert not list(folder.glob(f"*{SUFFIX}"))


def test_an_unexpected_error_is_one_note_and_keeps_nothing_more(kept_in, monkeypatch):
    import importlib.metadata

    import jax

    from nst_jax import cache

    folder, notes = kept_in
    step, state, data = kept_step()
    out_tree = jax.tree.structure(jax.eval_shape(step, state, data))

    def missing():
        raise importlib.metadata.PackageNotFoundError("jaxlib")  # e.g. JAX run from a source checkout

    monkeypatch.setattr(cache, "library_versions", missing)
    assert cache.kept_program(("step",), step, (state, data), out_tree) is None
    assert cache.PROGRAMS["folder"] is None  # not tried again in this process
    assert cache.kept_or_jitted(("step",), jax.jit(step), (state, data), out_tree)[0].n == 1
    assert len(notes) == 1 and "PackageNotFoundError" in notes[0] and not folder.exists()


def test_no_folder_or_an_unstable_description_keeps_nothing(kept_in, monkeypatch):
    from nst_jax import cache

    step, state, data = kept_step()
    assert cache.kept_program((object(),), step, (state, data), None) is None  # "<object at 0x...>"
    monkeypatch.setitem(cache.PROGRAMS, "folder", None)
    assert cache.kept_program(("step",), step, (state, data), None) is None


def test_the_least_recently_used_programs_go_past_the_folders_size(kept_in, monkeypatch):
    import os

    import jax

    from nst_jax import cache

    folder, _ = kept_in
    step, state, data = kept_step()
    out_tree = jax.tree.structure(jax.eval_shape(step, state, data))
    cache.kept_program(("first",), step, (state, data), out_tree)
    (first,) = folder.glob(f"*{SUFFIX}")
    os.utime(first, (1, 1))  # long unused
    monkeypatch.setattr(cache, "MAX_PROGRAM_BYTES", int(first.stat().st_size * 2.5))
    cache.kept_program(("second",), step, (state, data), out_tree)
    assert first.exists()  # two fit
    cache.kept_program(("third",), step, (state, data), out_tree)
    assert len(list(folder.glob(f"*{SUFFIX}"))) == 2 and not first.exists()


def test_a_program_jaxs_cache_held_is_not_kept(kept_in, monkeypatch):
    """XLA:CPU writes a program it loaded from JAX's cache so that it cannot run: such a one
    is used by this process and not kept."""
    from contextlib import contextmanager

    import jax

    from nst_jax import cache

    folder, notes = kept_in
    step, state, data = kept_step()
    out_tree = jax.tree.structure(jax.eval_shape(step, state, data))

    @contextmanager
    def found_in_jaxs_cache():
        jax.monitoring.record_event("/jax/compilation_cache/cache_hits")
        yield

    monkeypatch.setattr(cache, "_compiled_here", found_in_jaxs_cache)
    program = cache.kept_program(("held",), step, (state, data), out_tree)
    np.testing.assert_array_equal(program(state, data)[0].x, jax.jit(step)(state, data)[0].x)
    assert not list(folder.glob(f"*{SUFFIX}")) and not notes


KEEP_ONE = """
import sys, jax, jax.numpy as jnp
from nst_jax import cache
cache.enable_cache(sys.argv[1])
def step(x, w):
    y = jnp.tanh(x @ w) + jnp.broadcast_to(w.sum(0), x.shape)
    return {"y": y, "s": jnp.sum(y ** 2)}
x, w = jnp.ones((64, 32)), jnp.eye(32) * 0.5
program = cache.kept_program(("one",), step, (x, w), jax.tree.structure(jax.eval_shape(step, x, w)))
print(float(program(x, w)["s"]), float(jax.jit(step)(x, w)["s"]))
"""


@pytest.mark.slow
def test_a_program_kept_again_after_its_file_went_runs_in_the_next_process(tmp_path):
    """Its file lost (let go, or the code changed) while JAX's cache stays: the program is
    compiled again, not taken from JAX's cache, and what is kept runs."""
    folder = tmp_path / "cache"

    def process():
        done = subprocess.run([sys.executable, "-c", KEEP_ONE, str(folder)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-600:]
        kept, jitted = done.stdout.split()
        assert kept == jitted

    process()
    for path in (folder / "programs").glob(f"*{SUFFIX}"):
        path.unlink()
    process()
    process()  # loads what the second kept
    assert len(list((folder / "programs").glob(f"*{SUFFIX}"))) == 1


def test_a_result_whose_structure_cannot_be_written_is_used_not_kept(kept_in):
    import jax

    from nst_jax import cache

    class Local(NamedTuple):  # no pickle can name it
        x: object
        n: object

    folder, notes = kept_in
    step, state, data = kept_step(Local)
    program = cache.kept_program(("local",), step, (state, data), None)
    np.testing.assert_array_equal(program(state, data)[0].x, jax.jit(step)(state, data)[0].x)
    assert not list(folder.glob(f"*{SUFFIX}")) and not notes and cache.PROGRAMS["folder"] is not None


def test_a_program_that_cannot_be_written_is_compiled_once_and_used(kept_in, monkeypatch):
    import jax

    from nst_jax import cache

    folder, notes = kept_in
    step, state, data = kept_step()
    traced = []

    def counted(*args):
        traced.append(1)
        return step(*args)

    def refuses(compiled):
        raise NotImplementedError("serialize_executables with const_args")

    monkeypatch.setattr(cache, "serialize", refuses)
    program = cache.kept_program(("unwritable",), counted, (state, data), None)
    np.testing.assert_array_equal(program(state, data)[0].x, jax.jit(step)(state, data)[0].x)
    assert len(traced) == 1 and not list(folder.glob(f"*{SUFFIX}")) and not notes


PLACED_TWICE = """
import os, sys
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
import jax, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from nst_jax import cache
cache.enable_cache(sys.argv[1])
double = lambda x: x * 2.0
x = np.arange(8, dtype=np.float32).reshape(2, 4)
split = jax.device_put(x, NamedSharding(Mesh(np.array(jax.devices()), ("b",)), PartitionSpec("b")))
for placed in (split, jax.device_put(x, jax.devices()[1])):
    assert np.array_equal(np.asarray(cache.kept_or_jitted(("double",), double, (placed,))), 2 * x)
print(len(cache.LOADED))
"""


def test_arguments_of_one_shape_placed_otherwise_get_their_own_program(tmp_path):
    """A program compiled for a batch split over two devices refuses the same shape on one
    device: the placement is part of what a kept program is keyed by (it crashed before)."""
    done = subprocess.run([sys.executable, "-c", PLACED_TWICE, str(tmp_path / "cache")], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-600:]
    assert done.stdout.split() == ["2"]
