"""Signals at any moment of a real run (seeded random moments): one line, exit 128 + the
signal's number, no traceback or crash, and a checkpoint that resumes to exactly the
uninterrupted result; and a standard output that cannot be written is one line too."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # every test runs the command in a process of its own

SIGNALS = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGHUP: 129}
RUN = ["stylize", "CONTENT", "STYLE", "--size", "40", "--steps", "12", "--scales", "24,32,40",
       "--style-layers", "relu1_1,relu2_1", "--content-layers", "relu2_2"]


def command(images, *more):
    args = [str(images[0]) if a == "CONTENT" else str(images[1]) if a == "STYLE" else a for a in RUN]
    return [sys.executable, "-c", "from nst_jax.console import main; main()", *args, *map(str, more)]


def pixels(path):
    return np.asarray(Image.open(path), np.int16)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return {**os.environ, "NST_JAX_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from nst_jax.image import save_image

    folder, rng = tmp_path_factory.mktemp("images"), np.random.default_rng(7)
    content, style = folder / "content.png", folder / "style.png"
    save_image(rng.uniform(size=(40, 32, 3)), content)
    save_image(rng.uniform(size=(32, 40, 3)), style)
    return content, style


@pytest.fixture(scope="module")
def full(images, env, tmp_path_factory):
    """The uninterrupted run's picture."""
    path = tmp_path_factory.mktemp("full") / "full.png"
    subprocess.run(command(images, "-o", path), env=env, check=True, capture_output=True)
    return pixels(path)


@pytest.mark.parametrize("seed", range(4))
def test_a_signal_at_a_random_moment(tmp_path, images, env, full, seed):
    rng = random.Random(seed)
    sig, moment = rng.choice(list(SIGNALS)), rng.uniform(0.1, 6.0)
    out, ckpt = tmp_path / "o.png", tmp_path / "o.ckpt"
    proc = subprocess.Popen(command(images, "-o", out, "--checkpoint-every", 1), env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(moment)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    what = f"{signal.Signals(sig).name} at {moment:.2f} s: exit {proc.returncode}\n{stderr}"
    assert proc.returncode in (0, SIGNALS[sig]), what
    assert "Traceback" not in stderr and "Exception" not in stderr, what
    assert not list(tmp_path.glob(".*.tmp")), what  # no half-written file
    if proc.returncode == 0:  # the run had finished
        assert (pixels(out) == full).all()
        return
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted"), what
    if ckpt.exists():
        assert "saved the best image" in last, what
        subprocess.run(command(images, "-o", out, "--resume", ckpt), env=env, check=True, capture_output=True)
        assert (pixels(out) == full).all(), what
    else:
        assert last == "interrupted; nothing more was saved" and not out.exists(), what


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", [["--version"], ["weights", "list"]])
def test_a_full_standard_output_is_one_line(args, tmp_path):
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-c", "from nst_jax.console import main; main()", *args],
                           stdout=full, stderr=subprocess.PIPE, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and r.stderr == "error: cannot write the command's output: No space left on device\n"


def test_a_deleted_working_folder_is_one_line(tmp_path):
    gone = tmp_path / "gone"
    gone.mkdir()
    code = ("import os, sys; os.chdir(sys.argv[1]); os.rmdir(sys.argv[1]); sys.argv[1:] = ['weights', 'list']; "
            "from nst_jax.console import main; main()")
    r = subprocess.run([sys.executable, "-c", code, str(gone)], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert r.returncode == 1 and r.stderr == ("error: the current folder no longer exists: run nst-jax from "
                                              "another one\n")


def test_a_signal_after_the_command_has_finished_changes_nothing(tmp_path):
    # Python's teardown gives each signal its default action back; a signal landing there
    # used to kill a finished command (exit -15). Signals at spread moments of the teardown.
    codes = []
    for i in range(4):
        proc = subprocess.Popen([sys.executable, "-c", "from nst_jax.console import main; main()", "--version"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        proc.stdout.readline()  # the command's output: its work is done
        time.sleep(0.008 * i)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        codes.append(proc.returncode)
    assert codes == [0] * 4


def test_names_that_are_not_utf8(images, env, tmp_path):
    """A file name may be any bytes but / and NUL: one that decodes to no text is read,
    written and named in messages like any other."""
    content, out = tmp_path / os.fsdecode(b"c\xff.png"), tmp_path / os.fsdecode(b"o\xfe.png")
    content.write_bytes(images[0].read_bytes())
    weights = tmp_path / os.fsdecode(b"w\xff.safetensors")
    weights.write_bytes(b"not weights")
    main = [sys.executable, "-c", "from nst_jax.console import main; main()"]
    r = subprocess.run([*main, "weights", "convert", weights], env=env, capture_output=True, timeout=120)
    assert r.returncode == 1 and r.stdout == b"" and r.stderr.count(b"\n") == 1, r.stderr
    assert r.stderr.startswith(b"error: ") and b"Traceback" not in r.stderr
    r = subprocess.run([*main, "stylize", content, images[1], "-o", out, "--size", "32", "--steps", "2",
                        "--scales", "none"], env=env, capture_output=True, timeout=300)
    assert r.returncode == 0 and b"Traceback" not in r.stderr, r.stderr
    assert out.exists() and out.with_suffix(".json").exists() and pixels(out).shape == (32, 26, 3)
