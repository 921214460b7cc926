"""The persistent compilation cache: a second run loads what the first compiled; a cache
that cannot be used costs a compile and one note, never the run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nst_jax.cache import cache_dir, cache_off
from nst_jax.image import save_image


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
    cache = tmp_path / "cache"
    first = run(tmp_path, cache)
    assert first.returncode == 0, first.stderr
    written = entries(cache)
    assert written  # the step, the targets' forward passes, the init
    second = run(tmp_path, cache)
    assert second.returncode == 0, second.stderr
    assert entries(cache) == written  # every program was found: nothing new compiled
    assert not [line for line in second.stderr.splitlines() if line.startswith("note:")
                and not line.startswith("note: balance:")]  # nothing said about the cache
    assert compile_seconds(second.stdout) < compile_seconds(first.stdout)


@pytest.mark.slow
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
